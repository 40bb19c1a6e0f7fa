// Validates custom resources (a JSON array on stdin) against the schemas of
// their own CRDs, with the validators npm @kubernetes-models generates from
// those CRDs. Prints "<Kind>/<name> ok" or the errors; exits 1 on any error.
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "gateway.networking.k8s.io/v1/HTTPRoute": HTTPRoute,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;

let failed = false;
for (const obj of JSON.parse(input)) {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) {
    console.log(`${id}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed = true;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`${id} ok`);
  } catch (err) {
    console.log(`${id}: ${err.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
