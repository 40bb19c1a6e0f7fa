// Validates custom resources (a JSON array on stdin) against the schemas of
// their own CRDs, with the validators npm @kubernetes-models generates from
// those CRDs (Gateway API, Prometheus Operator, KEDA). Prints "<Kind>/<name> ok"
// or the errors, one line per object; exits 1 on any error, and a kind not
// listed below is an error too. Called by e2e/harness/schemas.py.
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "gateway.networking.k8s.io/v1/HTTPRoute": HTTPRoute,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;

let objects;
try {
  objects = JSON.parse(input);
} catch (err) {
  console.log(`stdin is not JSON: ${err.message}`);
  process.exit(1);
}
if (!Array.isArray(objects)) {
  console.log("stdin must be a JSON array of objects");
  process.exit(1);
}

let failed = false;
for (const obj of objects) {
  const id = `${obj?.kind}/${obj?.metadata?.name}`;
  const Model = MODELS[`${obj?.apiVersion}/${obj?.kind}`];
  if (!Model) {
    console.log(`${id}: no schema for ${obj?.apiVersion} ${obj?.kind}`);
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
