// The GraphQL-over-HTTP spec's reference audit (graphql-http's serverAudits) against a
// running Tally: node graphql-http-audit.mjs <url> <bearer token>. Exits 1 unless
// every audit passes without a warning.
import { serverAudits } from "graphql-http";

const [url, token] = process.argv.slice(2);
const authorized = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });

let failed = 0;
let passed = 0;
for (const audit of serverAudits({ url, fetchFn: authorized })) {
  const result = await audit.fn();
  if (result.status === "ok") {
    passed += 1;
    continue;
  }
  failed += 1;
  console.log(`${result.status}: ${audit.name}: ${result.reason}`);
}
console.log(`graphql-http audit: ${passed} ok, ${failed} not ok`);
process.exit(failed === 0 ? 0 : 1);
