// Builds the dashboard into dist/ for crowdflow-aggregator to embed (aggregator/build.rs):
// one minified script and one stylesheet with content hashes in their names, the page that
// loads them, and a gzip copy of each. Fails when the page weighs more than the budget.
//
//   npm run build

import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

/** Compressed page weight budget, in bytes (issue: < 300 KB without map tiles). */
export const BUDGET_BYTES = 300 * 1024;

const dist = 'dist';
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });

const result = await build({
  entryPoints: ['src/main.js'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  entryNames: 'app-[hash]',
  outdir: join(dist, 'assets'),
  metafile: true,
  legalComments: 'eof',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`the build made ${outputs.join(', ')}: expected one .js and one .css`);
const page = readFileSync('src/index.html', 'utf8').replace('%APP_JS%', js).replace('%APP_CSS%', css);
writeFileSync(join(dist, 'index.html'), page);

let total = 0;
const rows = [];
for (const file of [join(dist, 'index.html'), ...readdirSync(join(dist, 'assets')).map((f) => join(dist, 'assets', f))]) {
  const body = readFileSync(file);
  const gz = gzipSync(body, { level: 9 });
  writeFileSync(`${file}.gz`, gz);
  total += gz.length;
  rows.push(`  ${file.padEnd(40)} ${String(statSync(file).size).padStart(8)} B  ${String(gz.length).padStart(7)} B gzip`);
}
console.log(`dashboard built into ${dist}/:\n${rows.join('\n')}\n  page weight ${(total / 1024).toFixed(1)} KB gzip (budget ${BUDGET_BYTES / 1024} KB)`);
if (total > BUDGET_BYTES) {
  console.error(`error: the page weighs ${(total / 1024).toFixed(1)} KB compressed, over the ${BUDGET_BYTES / 1024} KB budget`);
  process.exit(1);
}
