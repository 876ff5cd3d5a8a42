// Builds the app into dist/: index.html plus content-hashed assets, the same
// bytes on every machine for the same sources (CI rebuilds and compares).
import * as esbuild from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");

await rm(dist, { recursive: true, force: true });
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.tsx" },
  jsx: "automatic",
  jsxImportSource: "preact",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome109", "firefox115", "safari16"],
  outdir: "dist/assets",
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  legalComments: "eof",
  charset: "utf8",
  metafile: true,
  logLevel: "warning",
});

let js = "";
let css = "";
for (const [file, out] of Object.entries(result.metafile.outputs)) {
  if (out.entryPoint && file.endsWith(".js")) js = basename(file);
  if (file.endsWith(".css")) css = basename(file);
}
if (!js || !css) throw new Error(`build: missing outputs (js=${js}, css=${css})`);

await mkdir(dist, { recursive: true });
const html = (await readFile(join(here, "src/index.html"), "utf8")).replace("{{JS}}", `/assets/${js}`).replace("{{CSS}}", `/assets/${css}`);
await writeFile(join(dist, "index.html"), html);

for (const [file, out] of Object.entries(result.metafile.outputs)) {
  console.log(`${file.padEnd(36)} ${(out.bytes / 1024).toFixed(1).padStart(7)} KiB`);
}
