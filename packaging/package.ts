// Binary packages of the bun-compiled agent (docs/PACKAGING.md):
//   bun packaging/package.ts deb   -> dist/cvm-unlock_<version>_amd64.deb  (dpkg-deb)
//   bun packaging/package.ts rpm   -> dist/cvm-unlock-<version>-1.x86_64.rpm (rpmbuild)
// `npm run package:deb|rpm` builds dist/cvm-unlock first. Both packages hold the same tree: the
// agent, the dracut module (opt-in: no dracut.conf.d drop-in), manual pages generated from
// docs/CLI.md and docs/CONFIG.md, shell completion generated from the command registry, docs,
// the licence.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { bashCompletion, completionModel, zshCompletion } from "./completion.ts";
import { markdownToMan } from "./man.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const DIST = path.join(ROOT, "dist");
const BINARY = path.join(DIST, "cvm-unlock");
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  version: string;
  description: string;
};
const VERSION = pkg.version;

type Format = "deb" | "rpm";

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { cwd: opts.cwd ?? ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
}

function put(root: string, rel: string, data: string | Uint8Array, mode = 0o644): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  fs.chmodSync(p, mode);
}

/** Compressed like dh_compress does it: gzip -9n (no name, no timestamp: reproducible). */
const gz = (s: string) => gzipSync(s, { level: 9 });

/** The date of the commit being packaged (reproducible), or today outside git. */
function buildDate(): string {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch) return new Date(Number(epoch) * 1000).toISOString().slice(0, 10);
  try {
    return run("git", ["log", "-1", "--format=%cs"]).trim();
  } catch {
    return new Date().toISOString().slice(0, 10);
  }
}

/** The highest GLIBC_x.y symbol version the binary needs: its only shared-library dependency. */
export function glibcFloor(binary: string): string {
  const versions = [...run("objdump", ["-T", binary]).matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [
    Number(m[1]),
    Number(m[2]),
  ]);
  if (!versions.length) throw new Error(`${binary}: no GLIBC symbol versions (not the bun-compiled agent?)`);
  versions.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  return versions.at(-1)!.join(".");
}

/** npm packages compiled into the binary (runtime dependencies in the lock file), for the licence notes. */
function bundledPackages(): { name: string; version: string; license: string }[] {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<
      string,
      { version?: string; license?: string; dev?: boolean; devOptional?: boolean; link?: boolean }
    >;
  };
  return Object.entries(lock.packages)
    .filter(([k, v]) => k.startsWith("node_modules/") && !v.dev && !v.devOptional && !v.link)
    .map(([k, v]) => ({
      name: k.slice("node_modules/".length),
      version: v.version!,
      license: v.license ?? "see package",
    }));
}

/** A package's own licence text, as its authors ship it (MIT and BSD ask for it with every copy). */
function licenceText(name: string): string | undefined {
  const dir = path.join(ROOT, "node_modules", name);
  const file = ["LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "license"].find((f) =>
    fs.existsSync(path.join(dir, f)),
  );
  return file === undefined ? undefined : fs.readFileSync(path.join(dir, file), "utf8").trimEnd();
}

function thirdPartyNotice(): string {
  const bun = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules/bun/package.json"), "utf8")) as {
    version: string;
    license: string;
  };
  const packages = bundledPackages();
  const texts = packages.flatMap((p) => {
    const text = licenceText(p.name);
    return text === undefined ? [] : ["", `---- ${p.name} ${p.version} ----`, "", text];
  });
  return [
    "/usr/bin/cvm-unlock is a `bun build --compile` executable: it contains the bun runtime",
    `(bun ${bun.version}, ${bun.license}; bun itself includes JavaScriptCore and other libraries under`,
    "their own licences, listed in bun's documentation under Project, Licensing) and these npm packages:",
    ...packages.map((p) => `  ${p.name} ${p.version} (${p.license})`),
    "",
    "Their licence texts follow.",
    ...texts,
  ].join("\n");
}

/** The file tree both packages install; `zshDir` differs between Debian and Fedora. */
async function stage(root: string, format: Format): Promise<void> {
  put(root, "usr/bin/cvm-unlock", fs.readFileSync(BINARY), 0o755);

  const moduleSrc = path.join(ROOT, "dracut-module", "90cvm-unlock");
  for (const f of fs.readdirSync(moduleSrc))
    put(
      root,
      `usr/lib/dracut/modules.d/90cvm-unlock/${f}`,
      fs.readFileSync(path.join(moduleSrc, f)),
      f === "module-setup.sh" || f.endsWith(".sh") ? 0o755 : 0o644,
    );

  // The SSH host identity image kit: inert until install-into-image puts it into an image (docs/SSH-IDENTITY.md).
  const kitSrc = path.join(ROOT, "image", "ssh");
  for (const f of fs.readdirSync(kitSrc)) {
    const exec = (fs.statSync(path.join(kitSrc, f)).mode & 0o111) !== 0;
    put(root, `usr/share/cvm-unlock/ssh/${f}`, fs.readFileSync(path.join(kitSrc, f)), exec ? 0o755 : 0o644);
  }
  put(
    root,
    "usr/lib/cvm-unlock/sshd-only-attested-host-key",
    fs.readFileSync(path.join(kitSrc, "sshd-only-attested-host-key")),
    0o755,
  );

  const date = buildDate();
  const md = (f: string) => fs.readFileSync(path.join(ROOT, "docs", f), "utf8");
  put(
    root,
    "usr/share/man/man1/cvm-unlock.1.gz",
    gz(
      markdownToMan(md("CLI.md"), {
        name: "cvm-unlock",
        section: 1,
        summary: "attest a confidential VM to a trustee KBS and release its disk key",
        version: VERSION,
        date,
        seeAlso: ["cvm-unlock.conf(5)", "cryptsetup(8)", "dracut(8)"],
      }),
    ),
  );
  put(
    root,
    "usr/share/man/man5/cvm-unlock.conf.5.gz",
    gz(
      markdownToMan(md("CONFIG.md"), {
        name: "cvm-unlock.conf",
        section: 5,
        summary: "configuration of cvm-unlock (/etc/cvm-unlock/config.json)",
        version: VERSION,
        date,
        seeAlso: ["cvm-unlock(1)", "dracut.conf(5)"],
      }),
    ),
  );

  const model = await completionModel();
  put(root, "usr/share/bash-completion/completions/cvm-unlock", bashCompletion(model));
  const zshDir = format === "deb" ? "usr/share/zsh/vendor-completions" : "usr/share/zsh/site-functions";
  put(root, `${zshDir}/_cvm-unlock`, zshCompletion(model));

  const doc = "usr/share/doc/cvm-unlock";
  put(root, `${doc}/README.md`, fs.readFileSync(path.join(ROOT, "README.md")));
  for (const f of fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")))
    put(root, `${doc}/${f}`, md(f));
  put(
    root,
    `${doc}/examples/dracut.conf.d/91-cvm-unlock-image.conf`,
    fs.readFileSync(path.join(ROOT, "dracut-module", "example", "91-cvm-unlock-image.conf")),
  );
  put(root, `${doc}/THIRD-PARTY`, thirdPartyNotice() + "\n");
  if (format === "deb") put(root, `${doc}/copyright`, debianCopyright());
  else put(root, "usr/share/licenses/cvm-unlock/LICENSE", fs.readFileSync(path.join(ROOT, "LICENSE")));
}

function debianCopyright(): string {
  return [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    "Upstream-Name: cvm-unlock",
    "Comment: /usr/bin/cvm-unlock also contains the bun runtime and npm packages under their own",
    " licences; see /usr/share/doc/cvm-unlock/THIRD-PARTY.",
    "",
    "Files: *",
    "Copyright: the cvm-unlock authors",
    "License: Apache-2.0",
    " On Debian systems the full text of the Apache License 2.0 is in",
    " /usr/share/common-licenses/Apache-2.0.",
    "",
  ].join("\n");
}

function walkFiles(dir: string, rel = ""): string[] {
  return fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = path.join(rel, e.name);
    return e.isDirectory() ? walkFiles(dir, r) : [r];
  });
}

/** Runtime dependencies: cryptsetup's CLI (the agent pipes the key into it) and glibc. */
export function debControl(installedKiB: number, glibc: string): string {
  return [
    "Package: cvm-unlock",
    `Version: ${VERSION}`,
    "Architecture: amd64",
    "Maintainer: cvm-unlock developers <cvm-unlock@invalid>",
    `Installed-Size: ${installedKiB}`,
    `Depends: libc6 (>= ${glibc}), cryptsetup-bin`,
    // dracut (not -core) would replace initramfs-tools, the host's generator: only suggested
    "Suggests: dracut-core, dracut-network",
    "Section: admin",
    "Priority: optional",
    `Description: ${pkg.description.split(":")[0]}`,
    ` ${pkg.description}.`,
    " .",
    " Contains the agent (a bun-compiled executable) and an opt-in dracut module;",
    " installing the package does not change how this machine builds its initramfs.",
    "",
  ].join("\n");
}

function buildDeb(stageDir: string, glibc: string): string {
  const root = path.join(stageDir, "root");
  const files = walkFiles(root);
  const md5 = run("md5sum", files, { cwd: root });
  put(root, "DEBIAN/md5sums", md5);
  const kib = Math.ceil(files.reduce((n, f) => n + fs.statSync(path.join(root, f)).size, 0) / 1024);
  put(root, "DEBIAN/control", debControl(kib, glibc));
  const out = path.join(DIST, `cvm-unlock_${VERSION}_amd64.deb`);
  // zstd: xz takes minutes over a 110 MB executable; dpkg reads zstd since 1.21.18 (Debian 12)
  run("dpkg-deb", ["--root-owner-group", "-Zzstd", "--build", root, out]);
  return out;
}

function buildRpm(stageDir: string): string {
  const top = path.join(stageDir, "rpmbuild");
  const spec = fs
    .readFileSync(path.join(ROOT, "packaging", "rpm", "cvm-unlock.spec.in"), "utf8")
    .replaceAll("@VERSION@", VERSION)
    .replaceAll("@SUMMARY@", pkg.description.split(":")[0]!)
    .replaceAll("@DESCRIPTION@", pkg.description + ".");
  put(top, "SPECS/cvm-unlock.spec", spec);
  run("rpmbuild", [
    "-bb",
    "--quiet",
    "--target",
    "x86_64-linux",
    "--define",
    `_topdir ${top}`,
    "--define",
    `cvm_stage ${path.join(stageDir, "root")}`,
    path.join(top, "SPECS", "cvm-unlock.spec"),
  ]);
  const built = path.join(top, "RPMS", "x86_64", `cvm-unlock-${VERSION}-1.x86_64.rpm`);
  const out = path.join(DIST, path.basename(built));
  fs.copyFileSync(built, out);
  return out;
}

async function main(argv: string[]): Promise<void> {
  const format = argv[0];
  if (format !== "deb" && format !== "rpm") throw new Error("usage: bun packaging/package.ts deb|rpm");
  if (!fs.existsSync(BINARY)) throw new Error(`${BINARY} missing: run npm run build (npm run package:${format} does)`);
  // a binary left over from another checkout would be packaged under the wrong version
  const reported = run(BINARY, ["version"]);
  if (!reported.startsWith(`cvm-unlock ${VERSION} `))
    throw new Error(`${BINARY} reports "${reported.trim()}", package.json says ${VERSION}: rebuild it`);
  const stageDir = fs.mkdtempSync(path.join(os.tmpdir(), `cvm-unlock-${format}-`));
  try {
    await stage(path.join(stageDir, "root"), format);
    const out = format === "deb" ? buildDeb(stageDir, glibcFloor(BINARY)) : buildRpm(stageDir);
    console.log(`built ${path.relative(process.cwd(), out)}: ${fs.statSync(out).size} bytes`);
  } finally {
    fs.rmSync(stageDir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main(process.argv.slice(2));
