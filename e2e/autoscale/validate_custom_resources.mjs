// Validates the external-scaler examples' custom resources (a JSON array on
// stdin) against the schemas npm @kubernetes-models generates from KEDA's and
// the Prometheus Operator's own CRDs. Prints "<Kind>/<name> ok" or the errors;
// exits 1 on any error.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
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
