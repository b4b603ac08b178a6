// Lint Cypher statements with Neo4j's own grammar and semantic analysis
// (@neo4j-cypher/language-support, the engine behind Neo4j's editors).
//
// stdin:  JSON {"statements": [{"name": str, "query": str}, ...], "schema": DbSchema?}
//         (a bare JSON list of statements is accepted too)
// stdout: JSON [{"name": str, "diagnostics": [{"severity": int, "message": str,
//                                             "start": int, "end": int}]}, ...]
// severity follows the LSP: 1 error, 2 warning, 3 information, 4 hint.
// Diagnostics about parameters that are not declared in the schema are dropped: the
// statements take their values as parameters by design, and the schema cannot know them.
import { lintCypherQuery, isNotParamError } from '@neo4j-cypher/language-support';

function readStdin() {
  return new Promise((resolve, reject) => {
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => { data += chunk; });
    process.stdin.on('end', () => resolve(data));
    process.stdin.on('error', reject);
  });
}

const input = JSON.parse(await readStdin());
const statements = Array.isArray(input) ? input : input.statements;
const schema = (Array.isArray(input) ? {} : input.schema) ?? {};

const report = statements.map((item, i) => {
  const statement = typeof item === 'string' ? { name: `statement_${i}`, query: item } : item;
  const { diagnostics } = lintCypherQuery(statement.query, schema);
  return {
    name: statement.name,
    diagnostics: diagnostics.filter(isNotParamError).map((d) => ({
      severity: d.severity,
      message: d.message,
      start: d.offsets.start,
      end: d.offsets.end,
    })),
  };
});
process.stdout.write(JSON.stringify(report));
