// Validates prometheus-operator custom resources (ServiceMonitor, PodMonitor, PrometheusRule, …)
// in rendered multi-document YAML files against the schemas generated from the upstream CRDs
// (@kubernetes-models/prometheus-operator). Prints one JSON line per resource:
//   {"file": …, "kind": …, "name": …, "ok": true|false, "error": …}
// Usage: node validate_crs.mjs FILE…   (the file must sit next to node_modules: ESM ignores NODE_PATH;
// the chart tests copy it into target/chart-tools/node).
import fs from 'node:fs';
import * as yaml from 'js-yaml';
import * as po from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, 'utf8'))) {
    if (!doc || typeof doc.apiVersion !== 'string' || !doc.apiVersion.startsWith('monitoring.coreos.com/')) continue;
    const result = { file, kind: doc.kind, name: doc.metadata?.name ?? null, ok: true };
    const Model = doc.apiVersion === 'monitoring.coreos.com/v1' ? po[doc.kind] : undefined;
    if (!Model) {
      result.ok = false;
      result.error = `no schema for ${doc.apiVersion} ${doc.kind}`;
    } else {
      try {
        new Model(doc).validate();
      } catch (e) {
        result.ok = false;
        result.error = e.message;
      }
    }
    if (!result.ok) failed++;
    console.log(JSON.stringify(result));
  }
}
process.exit(failed ? 1 : 0);
