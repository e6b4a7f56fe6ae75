// No native extractor: cbor-x treats a falsy export as "no acceleration" and keeps its pure-JavaScript
// decoder, which is the one the bun-compiled binary runs (it never bundles a .node addon).
module.exports = null;
