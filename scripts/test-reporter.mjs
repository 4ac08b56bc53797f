// A node:test reporter for scripts/test.mjs: one JSON line per finished top-level test (its
// file, name, duration and outcome) and the run's summary counts, so the runner can time each
// file even when several files share one process, and add up the suite's totals.
export default async function* keelReporter(source) {
  for await (const event of source) {
    const { type, data } = event;
    if ((type === 'test:pass' || type === 'test:fail') && data.nesting === 0) {
      yield `${JSON.stringify({
        kind: 'test',
        file: data.file ?? null,
        name: data.name,
        ok: type === 'test:pass',
        ms: data.details?.duration_ms ?? 0,
      })}\n`;
    } else if (type === 'test:diagnostic' && data.nesting === 0) {
      // The summary the runner prints at the end: "tests 12", "pass 12", "fail 0", ...
      const m = /^(tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(data.message);
      if (m) yield `${JSON.stringify({ kind: 'count', name: m[1], n: Number(m[2]) })}\n`;
    }
  }
}
