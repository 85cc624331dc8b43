// The in-cluster view, from GET /v1/queues under `cluster`: each worker Deployment's replicas and
// its KEDA ScaledObject, or, in words, why the status service cannot see them (not in a cluster,
// RBAC refused, the API did not answer). Text nodes only: nothing from the API becomes markup.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  node.append(...children.map((child) => (child instanceof Node ? child : String(child ?? '–'))));
  return node;
}

const yesNo = (value) => (value === true ? 'yes' : value === false ? 'no' : 'unknown');

function autoscaler(so, keda) {
  if (!so) {
    // No ScaledObject: by choice, for want of KEDA, or because it could not be read.
    return { true: 'none: a fixed replica count', false: 'none: KEDA is not installed' }[keda] ?? 'unknown';
  }
  const parts = [`ready ${yesNo(so.ready)}`, `active ${yesNo(so.active)}`,
    `${so.min_replicas}–${so.max_replicas} replicas`];
  if (so.fallback) parts.push('on fallback');
  if (so.paused) parts.push('paused');
  return `${so.name}: ${parts.join(', ')}`;
}

function summary(cluster, workers) {
  if (!cluster) return 'This status service does not report the cluster.';
  if (!cluster.available) return `Cluster view unavailable: ${cluster.reason}`;
  const where = `namespace ${cluster.namespace}, release ${cluster.release ?? 'any'}`;
  if (workers.length === 0) return `No worker Deployments in ${where}.`;
  const keda = cluster.keda ? '' : ' KEDA is not installed: the workers keep a fixed replica count.';
  return `Read from Kubernetes (${where}) at ${new Date(cluster.read_at).toLocaleTimeString()}.${keda}`;
}

export function renderCluster(cluster) {
  const table = document.getElementById('cluster-table');
  const workers = cluster?.workers ?? [];
  table.tBodies[0].replaceChildren(...workers.map((w) => el('tr', { 'data-job-type': w.job_type },
    el('th', { scope: 'row' }, w.job_type),
    el('td', { class: 'mono' }, w.deployment),
    el('td', { class: 'num desired' }, w.replicas.desired),
    el('td', { class: 'num current' }, w.replicas.current),
    el('td', { class: 'num ready' }, w.replicas.ready),
    el('td', { class: 'rollout' }, w.rolled_out ? 'rolled out' : w.rollout),
    el('td', { class: 'scaledobject' }, autoscaler(w.scaled_object, cluster.keda)))));
  table.hidden = workers.length === 0;
  document.getElementById('cluster-note').textContent = summary(cluster, workers);
}
