#!/usr/bin/env node
// Tokenizes files with one TextMate grammar the way VS Code does (vscode-textmate, oniguruma)
// and prints, as JSON, every line's tokens: tests/test_jx_editors.py reads the scopes of real
// workflows and of broken input from it.
//
// usage: node tokens.js GRAMMAR FILE...
// output: {"<file>": [[[start, end, scope...], ...] per line] or "timeout" when a line took
//          longer than the limit (a grammar that spins on some input)}
'use strict';
const fs = require('fs');
const common = require('vscode-tmgrammar-test/dist/common/index.js');

const LINE_TIME_LIMIT_MS = 2000;

async function main() {
  const [grammarPath, ...files] = process.argv.slice(2);
  const content = fs.readFileSync(grammarPath, 'utf8');
  const { scopeName } = JSON.parse(content);
  const registry = common.createRegistryFromGrammars([
    { grammar: { path: grammarPath, scopeName }, content }]);
  const grammar = await registry.loadGrammar(scopeName);
  const report = {};
  for (const file of files) {
    let stack = null;
    const lines = [];
    let stopped = false;
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const result = grammar.tokenizeLine(line, stack, LINE_TIME_LIMIT_MS);
      stopped = stopped || result.stoppedEarly;
      lines.push(result.tokens.map((t) => [t.startIndex, t.endIndex, ...t.scopes]));
      stack = result.ruleStack;
    }
    report[file] = stopped ? 'timeout' : lines;
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(2);
});
