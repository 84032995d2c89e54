#!/usr/bin/env node
// Runs the grammar test cases against many grammar files in one process and prints, as JSON,
// how many assertions each grammar fails. tests/test_tmgrammar.py feeds it mutated copies of
// the Vinefile grammar: starting node once instead of once per mutant keeps the check fast.
//
// usage: node mutants.js GRAMMAR_LIST_FILE TESTCASE...
//   GRAMMAR_LIST_FILE holds one grammar path per line.
// output: {"<grammar path>": <failure count, or "timeout" when tokenizing never finished>}
'use strict';
const fs = require('fs');
const common = require('vscode-tmgrammar-test/dist/common/index.js');
const unit = require('vscode-tmgrammar-test/dist/unit/index.js');

// A mutant can make the tokenizer spin; vscode-textmate stops after this many ms per line.
const LINE_TIME_LIMIT_MS = 2000;

function withTimeLimit(grammar) {
  return {
    tokenizeLine(line, stack) {
      const result = grammar.tokenizeLine(line, stack, LINE_TIME_LIMIT_MS);
      if (result.stoppedEarly) throw new Error('timeout');
      return result;
    },
  };
}

async function main() {
  const [listFile, ...testFiles] = process.argv.slice(2);
  const paths = fs.readFileSync(listFile, 'utf8').split('\n').filter(Boolean);
  // Each grammar gets its own scope name so one registry (one WASM load) serves them all.
  const grammars = paths.map((path, i) => {
    const raw = JSON.parse(fs.readFileSync(path, 'utf8'));
    raw.scopeName = `source.mutant${i}`;
    return { grammar: { path, scopeName: raw.scopeName }, content: JSON.stringify(raw) };
  });
  const registry = common.createRegistryFromGrammars(grammars);
  const cases = testFiles.map((f) => unit.parseGrammarTestCase(fs.readFileSync(f, 'utf8')));
  const report = {};
  for (const [i, path] of paths.entries()) {
    const grammar = withTimeLimit(await registry.loadGrammar(`source.mutant${i}`));
    const limited = { loadGrammar: async () => grammar };
    let failures = 0;
    try {
      for (const tc of cases) failures += (await unit.runGrammarTestCase(limited, tc)).length;
      report[path] = failures;
    } catch (error) {
      report[path] = error.message === 'timeout' ? 'timeout' : `error: ${error.message}`;
    }
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(2);
});
