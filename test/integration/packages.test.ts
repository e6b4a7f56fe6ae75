// The .deb and .rpm (packaging/package.ts) as a packager and a host would meet them: contents,
// dependencies, the packaged binary running from a scratch root, generated man pages and shell
// completion, and the dracut module in a scratch dracut tree: a host build that does not ask for
// it is unchanged, an image build that does gets an agent that survived dracut's strip pass.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { globalOptions } from "../../agent/cli/global-options.ts";
import { commands } from "../../agent/commands/index.ts";
import { BINARY, ensureBinary, REPO_ROOT } from "../helpers/binary.ts";

const VERSION = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string })
  .version;
const DEB = path.join(REPO_ROOT, "dist", `cvm-unlock_${VERSION}_amd64.deb`);
const RPM = path.join(REPO_ROOT, "dist", `cvm-unlock-${VERSION}-1.x86_64.rpm`);
const BUN = path.join(REPO_ROOT, "node_modules", ".bin", "bun");
const SLOW = 900_000; // package and initramfs builds on a shared 2-core machine

let work: string;
let debRoot: string; // the .deb unpacked (dpkg -x): a scratch install root
let rpmRoot: string;

const sh = (cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  execFileSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"], ...opts });

beforeAll(() => {
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "packages-it-"));
  for (const f of ["deb", "rpm"]) sh(BUN, ["packaging/package.ts", f], { cwd: REPO_ROOT });
  debRoot = path.join(work, "deb-root");
  sh("dpkg-deb", ["-x", DEB, debRoot]);
  rpmRoot = path.join(work, "rpm-root");
  fs.mkdirSync(rpmRoot);
  execFileSync("sh", ["-c", `rpm2cpio "${RPM}" | cpio -idm --quiet`], { cwd: rpmRoot });
}, SLOW);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const EXPECTED = [
  "/usr/bin/cvm-unlock",
  "/usr/lib/dracut/modules.d/90cvm-unlock/module-setup.sh",
  "/usr/lib/dracut/modules.d/90cvm-unlock/cvm-unlock.service.in",
  "/usr/lib/dracut/modules.d/90cvm-unlock/cvm-unlock-exec.service",
  "/usr/share/man/man1/cvm-unlock.1.gz",
  "/usr/share/man/man5/cvm-unlock.conf.5.gz",
  "/usr/share/bash-completion/completions/cvm-unlock",
  "/usr/share/doc/cvm-unlock/PACKAGING.md",
  "/usr/share/doc/cvm-unlock/examples/dracut.conf.d/91-cvm-unlock-image.conf",
  "/usr/share/cvm-unlock/ssh/install-into-image",
  "/usr/share/cvm-unlock/ssh/sshd-host-key.conf",
  "/usr/share/cvm-unlock/ssh/cloud-init.cfg",
  "/usr/lib/cvm-unlock/sshd-only-attested-host-key",
];

/** Both packages: the common files, and no active dracut drop-in nor anything under /etc. */
function expectPackageTree(files: string[], formatSpecific: string[]): void {
  for (const f of [...EXPECTED, ...formatSpecific]) expect(files, f).toContain(f);
  expect(files.filter((f) => /dracut\.conf\.d\/.+\.conf$/.test(f) && !f.startsWith("/usr/share/doc/"))).toEqual([]);
  expect(files.filter((f) => f.startsWith("/etc/"))).toEqual([]);
}

describe("package contents and dependencies", () => {
  it("the .deb: agent, module, man pages, completion, docs, licence; no dracut.conf.d, nothing in /etc", () => {
    const files = sh("dpkg-deb", ["-c", DEB])
      .split("\n")
      .map((l) => l.split(/\s+/).at(-1)!.replace(/^\./, ""));
    expectPackageTree(files, ["/usr/share/zsh/vendor-completions/_cvm-unlock", "/usr/share/doc/cvm-unlock/copyright"]);
    expect(fs.readFileSync(path.join(debRoot, "usr/share/doc/cvm-unlock/copyright"), "utf8")).toMatch(
      /^License: Apache-2.0$/m,
    );
    // MIT and BSD ask for their notices with every copy of the bundled code
    const notice = fs.readFileSync(path.join(debRoot, "usr/share/doc/cvm-unlock/THIRD-PARTY"), "utf8");
    for (const p of ["undici", "cbor-x", "smol-toml", "@noble/curves", "@noble/hashes"])
      expect(notice).toMatch(new RegExp(`^---- ${p} \\S+ ----$`, "m"));
    expect(notice).toMatch(/Permission is hereby granted/);
    expect(notice).toMatch(/Redistribution and use in source and binary forms/);
  });

  it("the .deb depends on glibc and cryptsetup only; dracut is suggested, never required", () => {
    const field = (f: string) => sh("dpkg-deb", ["-f", DEB, f]).trim();
    expect(field("Package")).toBe("cvm-unlock");
    expect(field("Version")).toBe(VERSION);
    expect(field("Architecture")).toBe("amd64");
    expect(field("Depends")).toMatch(/^libc6 \(>= 2\.\d+\), cryptsetup-bin$/);
    // `dracut` conflicts with initramfs-tools: installing cvm-unlock must never swap the generator
    expect(field("Depends") + field("Pre-Depends") + field("Recommends")).not.toMatch(/dracut|initramfs/);
    expect(field("Suggests")).toContain("dracut-core");
  });

  it("the .rpm: same tree with the licence under /usr/share/licenses; requires cryptsetup and glibc", () => {
    const files = sh("rpm", ["-qlp", RPM]).split("\n");
    expectPackageTree(files, ["/usr/share/zsh/site-functions/_cvm-unlock", "/usr/share/licenses/cvm-unlock/LICENSE"]);
    const requires = sh("rpm", ["-qpR", RPM]).split("\n");
    expect(requires).toContain("cryptsetup");
    expect(requires).toContain("libc.so.6()(64bit)");
    expect(requires.filter((r) => /dracut|initramfs/.test(r))).toEqual([]);
    expect(sh("rpm", ["-qp", "--queryformat", "%{LICENSE}", RPM])).toBe("Apache-2.0");
    expect(fs.readFileSync(path.join(rpmRoot, "usr/share/licenses/cvm-unlock/LICENSE"), "utf8")).toContain(
      "Apache License",
    );
  });

  it("neither package strips the agent: both carry dist/cvm-unlock byte for byte, and it runs", () => {
    const original = fs.readFileSync(BINARY);
    for (const root of [debRoot, rpmRoot]) {
      const bin = path.join(root, "usr/bin/cvm-unlock");
      expect(fs.readFileSync(bin).equals(original), bin).toBe(true);
      expect(fs.statSync(bin).mode & 0o777).toBe(0o755);
      expect(sh(bin, ["version"])).toMatch(new RegExp(`^cvm-unlock ${VERSION.replace(/\./g, "\\.")} \\(commit `));
    }
  });
});

describe("generated man pages and completion", () => {
  const rendered = (root: string, page: string) =>
    sh("man", ["-l", path.join(root, page)], {
      env: { ...process.env, MANWIDTH: "100", LANG: "C.UTF-8", LC_ALL: "C.UTF-8" },
    });
  const sections = (doc: string) =>
    [...fs.readFileSync(path.join(REPO_ROOT, "docs", doc), "utf8").matchAll(/^## (.+)$/gm)].map((m) =>
      m[1]!.replace(/`/g, "").toUpperCase(),
    );

  it("man -l renders cvm-unlock(1) from docs/CLI.md: every section, the exit code table", () => {
    const text = rendered(debRoot, "usr/share/man/man1/cvm-unlock.1.gz");
    expect(text).toMatch(/^CVM-UNLOCK\(1\)/);
    expect(text).toMatch(/NAME\n\s+cvm-unlock - attest a confidential VM/);
    for (const s of sections("CLI.md")) expect(text, s).toContain(s);
    expect(text).toMatch(/│\s*14\s*│\s*wrong-key\s*│/);
    expect(text).toContain("--log-format journal|kmsg|text|json"); // options come out as plain ASCII hyphens
  });

  it("man -l renders cvm-unlock.conf(5) from docs/CONFIG.md: every section, every key", () => {
    const text = rendered(rpmRoot, "usr/share/man/man5/cvm-unlock.conf.5.gz");
    expect(text).toMatch(/^CVM-UNLOCK\.CONF\(5\)/);
    for (const s of sections("CONFIG.md")) expect(text, s).toContain(s);
    const keys = [
      ...fs.readFileSync(path.join(REPO_ROOT, "docs/CONFIG.md"), "utf8").matchAll(/^\| `([a-z_.*]+)` \|/gm),
    ];
    expect(keys.length).toBeGreaterThan(10);
    for (const [, k] of keys) expect(text, k).toContain(k);
  });

  it("bash completion offers every registered command and each command's options", async () => {
    const script = path.join(debRoot, "usr/share/bash-completion/completions/cvm-unlock");
    const complete = (words: string[]) =>
      sh("bash", [
        "-c",
        `source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _cvm_unlock; printf '%s\\n' "\${COMPREPLY[@]}"`,
        script,
        "cvm-unlock",
        ...words,
      ])
        .split("\n")
        .filter(Boolean);
    expect(complete([""]).sort()).toEqual(commands.map((c) => c.name).sort());
    for (const entry of commands) {
      const cmd = await entry.load();
      const visible = [...cmd.options, ...globalOptions].filter((o) => !o.hidden).map((o) => `--${o.name}`);
      expect(complete([entry.name, "--"]).sort(), entry.name).toEqual([...new Set(visible)].sort());
    }
    expect(complete(["fetch", "--log-format", ""])).toEqual(["journal", "kmsg", "text", "json"]);
    expect(complete(["unlock", "--dev"])).toEqual(["--device"]);
  });

  it("zsh completion parses and defines a function for every registered command", () => {
    const file = path.join(debRoot, "usr/share/zsh/vendor-completions/_cvm-unlock");
    expect(spawnSync("zsh", ["-n", file]).status).toBe(0);
    const text = fs.readFileSync(file, "utf8");
    for (const c of commands) expect(text).toContain(`_cvm_unlock_${c.name.replace(/-/g, "_")}() {`);
  });
});

describe("the dracut module on a host with the package installed", () => {
  // A scratch dracut tree: the system's (symlinked) with everything the .deb puts under
  // /usr/lib/dracut copied over it, and a test module that installs an executable copy of the
  // agent: the control that shows whether the strip pass ran.
  let tree: string;
  const config = () => path.join(work, "config.json");

  beforeAll(() => {
    tree = path.join(work, "dracut");
    sh("cp", ["-as", "/usr/lib/dracut", tree]);
    fs.rmSync(path.join(tree, "modules.d", "90cvm-unlock"), { recursive: true, force: true });
    sh("cp", ["-a", "--remove-destination", `${debRoot}/usr/lib/dracut/.`, tree]);
    const control = path.join(tree, "modules.d", "99strip-control");
    fs.mkdirSync(control);
    fs.writeFileSync(
      path.join(control, "module-setup.sh"),
      [
        "check() { return 255; }",
        "depends() { return 0; }",
        'install() { inst_simple "$cvm_unlock_binary" /usr/lib/strip-control/cvm-unlock; chmod 0755 "$initdir/usr/lib/strip-control/cvm-unlock"; }',
        "",
      ].join("\n"),
    );
    fs.writeFileSync(
      config(),
      JSON.stringify({
        kbs: { endpoints: ["https://kbs.example:8080"] },
        resource: "default/key/root",
        unlock: { volumes: [{ name: "root", gpt_auto_root: true }] },
      }),
    );
  });

  /** Builds an uncompressed initramfs with the scratch tree; returns dracut's status and the unpacked image. */
  function build(name: string, args: string[], conf: string): { status: number | null; log: string; root: string } {
    const confdir = path.join(work, `conf-${name}`);
    fs.mkdirSync(confdir);
    fs.writeFileSync(path.join(confdir, "90-test.conf"), conf);
    const img = path.join(work, `${name}.img`);
    const r = spawnSync(
      "dracut",
      [
        "--force",
        "--no-kernel",
        "--no-early-microcode",
        "--no-compress",
        "--conf",
        "/dev/null",
        "--confdir",
        confdir,
        ...args,
        img,
      ],
      { env: { ...process.env, dracutbasedir: tree }, encoding: "utf8", timeout: SLOW },
    );
    const root = path.join(work, `${name}-root`);
    fs.mkdirSync(root);
    if (r.status === 0) execFileSync("sh", ["-c", `cpio -idm --quiet < "${img}"`], { cwd: root });
    return { status: r.status, log: r.stdout + r.stderr, root };
  }

  it(
    "a host build that does not ask for it neither includes the module nor fails",
    () => {
      expect(fs.existsSync(path.join(tree, "modules.d/90cvm-unlock/module-setup.sh"))).toBe(true);
      // dracut's default module selection, as a kernel update runs it (no -m, no --add)
      const r = build("host", [], "");
      expect(r.status, r.log).toBe(0);
      expect(r.log).not.toMatch(/Including module: cvm-unlock/);
      expect(sh("find", [r.root, "-name", "*cvm-unlock*"])).toBe("");
    },
    SLOW,
  );

  it(
    "mode B (cvm_unlock_open=crypttab): the image's crypttab, the key socket and the per-volume check; no rd.luks=0",
    () => {
      const binary = path.join(debRoot, "usr/bin/cvm-unlock");
      const crypttab = path.join(work, "crypttab");
      const socket = "/run/cvm-unlock/key.sock";
      fs.writeFileSync(
        crypttab,
        `root UUID=6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10 ${socket} luks,headless=true,discard\n` +
          `var PARTLABEL=var ${socket} luks,headless=true,x-initrd.attach\n`,
      );
      const modeB = path.join(work, "config-mode-b.json");
      fs.writeFileSync(
        modeB,
        JSON.stringify({ kbs: { endpoints: ["https://kbs.example:8080"] }, resource: "default/key/root" }),
      );
      const conf = (ct: string) =>
        `cvm_unlock_binary="${binary}"\ncvm_unlock_config="${modeB}"\ncvm_unlock_open="crypttab"\ncvm_unlock_crypttab="${ct}"\n`;
      const r = build("mode-b", ["-m", "base cvm-unlock"], conf(crypttab));
      expect(r.status, r.log).toBe(0);
      expect(fs.readFileSync(path.join(r.root, "etc/crypttab"), "utf8")).toBe(fs.readFileSync(crypttab, "utf8"));
      const units = path.join(r.root, "etc/systemd/system");
      const lib = path.join(r.root, "usr/lib/systemd/system");
      // enabled: links (absolute, to be resolved inside the image)
      const linked = (p: string) => fs.lstatSync(path.join(units, p), { throwIfNoEntry: false })?.isSymbolicLink();
      expect(linked("sockets.target.wants/cvm-unlock-key.socket")).toBe(true);
      expect(linked("initrd.target.wants/cvm-unlock-key.service")).toBe(true);
      expect(linked("initrd-root-device.target.wants/cvm-unlock.service")).toBeUndefined();
      expect(fs.readFileSync(path.join(lib, "cvm-unlock-verify-mapping@.service"), "utf8")).toMatch(
        /^ExecStart=\/usr\/bin\/cvm-unlock verify-mapping %I$/m,
      );
      expect(fs.readFileSync(path.join(lib, "cvm-unlock-key.service"), "utf8")).toMatch(/^OnFailure=poweroff.target$/m);
      expect(fs.readFileSync(path.join(lib, "systemd-cryptsetup@.service.d/90-cvm-unlock-key.conf"), "utf8")).toMatch(
        /^Wants=cvm-unlock-key.socket cvm-unlock-verify-mapping@%i.service$/m,
      );
      expect(fs.existsSync(path.join(lib, "systemd-cryptsetup@.service.d/90-after-cvm-unlock.conf"))).toBe(false);
      expect(fs.readFileSync(path.join(r.root, "etc/cmdline.d/90cvm-unlock.conf"), "utf8")).toBe(
        "rd.shell=0 rd.emergency=poweroff\n",
      );
      // A crypttab serve-keys would refuse at boot fails the build instead.
      const bad = path.join(work, "crypttab-bad");
      fs.writeFileSync(bad, `root UUID=6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10 ${socket} luks\n`);
      const b = build("mode-b-bad", ["-m", "base cvm-unlock"], conf(bad));
      expect(b.status).not.toBe(0);
      expect(b.log).toMatch(/headless=true is missing/);
    },
    SLOW,
  );

  it(
    "the network handler: networkd on a build root without NetworkManager; NetworkManager asked for there fails the build; the early start's wiring",
    () => {
      // this host never has NetworkManager (it would take over the host's interfaces); the VM
      // test "NetworkManager" builds in a Debian tree that has it
      expect(fs.existsSync("/usr/lib/NetworkManager/nm-initrd-generator")).toBe(false);
      expect(fs.existsSync("/usr/libexec/nm-initrd-generator")).toBe(false);
      const binary = path.join(debRoot, "usr/bin/cvm-unlock");
      const conf = `do_strip="no"\ncvm_unlock_binary="${binary}"\ncvm_unlock_config="${config()}"\n`;
      const nm = build("network-manager", ["-m", "base cvm-unlock"], conf + 'cvm_unlock_network="network-manager"\n');
      expect(nm.status).not.toBe(0);
      expect(nm.log).toMatch(
        /cvm-unlock: cvm_unlock_network=network-manager, but the build root lacks NetworkManager's nm-initrd-generator/,
      );
      const typo = build("network-typo", ["-m", "base cvm-unlock"], conf + 'cvm_unlock_network="networkmanager"\n');
      expect(typo.status).not.toBe(0);
      expect(typo.log).toMatch(/cvm_unlock_network must be auto, networkd or network-manager, not 'networkmanager'/);
      // auto: what dracut's network module would pick here, systemd-networkd
      const auto = build("network-auto", ["-m", "base cvm-unlock"], conf);
      expect(auto.status, auto.log).toBe(0);
      expect(fs.existsSync(path.join(auto.root, "usr/lib/systemd/network/90-cvm-unlock-dhcp.network"))).toBe(true);
      expect(fs.existsSync(path.join(auto.root, "usr/lib/systemd/systemd-networkd"))).toBe(true);
      expect(sh("find", [auto.root, "-ipath", "*networkmanager*"])).toBe("");
      const cmdline = fs.readFileSync(path.join(auto.root, "etc/cmdline.d/90cvm-unlock.conf"), "utf8");
      expect(cmdline).not.toMatch(/rd\.neednet/);
      // The agent starts before udev's coldplug: the drop-in on the trigger unit must write the very
      // file the unit's agent waits for (with a shell the image has), and the firmware interfaces
      // init-data comes through must not wait for the coldplug to load them.
      const lib = path.join(auto.root, "usr/lib/systemd/system");
      const dropIn = fs.readFileSync(path.join(lib, "systemd-udev-trigger.service.d/90-cvm-unlock.conf"), "utf8");
      const written = /^ExecStartPost=(\/\S+) -c ': > (\/run\/\S+)'$/m.exec(dropIn);
      expect(written, dropIn).not.toBeNull();
      expect(fs.existsSync(path.join(auto.root, written![1]!)), `${written![1]} in the image`).toBe(true);
      const unit = fs.readFileSync(path.join(lib, "cvm-unlock.service"), "utf8");
      expect(/^ExecStart=.* --udev-trigger-marker (\S+)/m.exec(unit)?.[1], unit).toBe(written![2]);
      expect(unit).toMatch(/^After=.*systemd-modules-load\.service/m);
      expect(unit).not.toMatch(/^After=.*systemd-udev-trigger/m);
      expect(fs.readFileSync(path.join(auto.root, "etc/modules-load.d/90-cvm-unlock.conf"), "utf8")).toBe(
        "dmi-sysfs\nqemu_fw_cfg\n",
      );
    },
    SLOW,
  );

  for (const strip of [true, false])
    it(
      `an image build that asks for it (-m, do_strip=${strip ? "yes" : "no"}) gets an agent that runs`,
      () => {
        const binary = path.join(debRoot, "usr/bin/cvm-unlock");
        const r = build(
          strip ? "strip" : "nostrip",
          // the control only with strip: an executable copy of the agent would make dracut resolve
          // the agent's libraries for it, hiding one the module itself failed to install
          ["-m", strip ? "base cvm-unlock strip-control" : "base cvm-unlock"],
          `do_strip="${strip ? "yes" : "no"}"\ncvm_unlock_binary="${binary}"\ncvm_unlock_config="${config()}"\n`,
        );
        expect(r.status, r.log).toBe(0);
        const original = fs.readFileSync(binary);
        // the control: the strip pass ran and did strip an executable copy of the agent
        if (strip)
          expect(fs.readFileSync(path.join(r.root, "usr/lib/strip-control/cvm-unlock")).equals(original)).toBe(false);
        // the agent itself never is; it goes in without execute bits, restored at boot
        const agent = path.join(r.root, "usr/bin/cvm-unlock");
        expect(fs.readFileSync(agent).equals(original)).toBe(true);
        expect(fs.statSync(agent).mode & 0o777).toBe(0o644);
        const units = path.join(r.root, "etc/systemd/system");
        for (const u of ["cvm-unlock.service.requires", "cvm-unlock-verify-root.service.requires"]) {
          // an absolute link, to be resolved inside the image
          const target = fs.readlinkSync(path.join(units, u, "cvm-unlock-exec.service"));
          expect(fs.readFileSync(path.join(r.root, target), "utf8"), u).toMatch(
            /^ExecStart=chmod 0755 \/usr\/bin\/cvm-unlock$/m,
          );
        }
        // what that unit does, then the agent inside the unpacked image, with the image's own
        // libraries (a library dracut left out fails here as it would at boot)
        fs.chmodSync(agent, 0o755);
        // (bun finds its embedded program through /proc/self/exe: a private /proc for the chroot)
        const inImage = ["--mount", "--fork", `--mount-proc=${r.root}/proc`, "chroot", r.root, "/usr/bin/cvm-unlock"];
        expect(sh("unshare", [...inImage, "version"])).toMatch(/^cvm-unlock /);
        expect(fs.readFileSync(path.join(r.root, "etc/cvm-unlock/config.json"), "utf8")).toBe(
          fs.readFileSync(config(), "utf8"),
        );
      },
      SLOW,
    );
});
