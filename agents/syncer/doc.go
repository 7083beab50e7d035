// Package syncer keeps one kind of namespaced object in sync between a cluster
// and the broker: the cluster's own objects go up to the broker, the other
// clusters' come down as copies. The gateway syncs Cluster and Endpoint with it,
// the lighthouse agent ServiceImport and EndpointSlice.
//
//	cluster1, submariner-operator       broker, submariner-k8s-broker
//	  ep-a (source) ---- to broker ---->  ep-a.submariner-operator.cluster1
//	                                        submariner-io/clusterID=cluster1
//	                                                   |
//	                                              from broker
//	                                                   v
//	                                    cluster2, submariner-operator
//	                                      ep-a.submariner-operator.cluster1 (copy)
//	                                        submariner-io/clusterID=cluster1
//	                                        syncer.submariner.io/copy=true
//
// Every cluster runs one syncer per kind, so cluster2's own objects travel the same
// way to cluster1.
//
// # Objects and names
//
// A local object goes up under the name ToBroker.Name gives it (DefaultBrokerName:
// "<name>.<namespace>.<clusterID>", which no other source can share), labelled
// submv1.ClusterIDLabel=<cluster ID> and LabelOriginNamespace=<namespace>, and
// annotated AnnotationOriginName=<name>. A broker object comes down into every
// other cluster under its broker name, into the component namespace or the one
// FromBroker.Namespace picks, labelled LabelCopy and annotated
// AnnotationBrokerName; it keeps the cluster label. Copies are never pushed back;
// an object of this cluster never comes down. Because every name is a pure
// function of the source and every written object says where it comes from, a
// restarted syncer finds and adopts what an earlier run wrote: it duplicates
// nothing and rewrites nothing that is already right.
//
// # Convergence
//
// Informers watch the local sources, the local copies and the broker namespace; any
// event queues the object it concerns on a rate-limited work queue. A worker
// compares what should exist with what does, on whichever side, and creates,
// updates or deletes to match, the status through its subresource when
// Config.SyncStatus asks for it. A local object deleted, or filtered out, takes its
// broker object with it; a broker object gone takes its copies with it. Failed
// writes are retried with capped, jittered exponential backoff.
//
// # Broker outage
//
// The broker may be unreachable for a while. The syncer then keeps every local
// copy as it is (unreachable is not "deleted": only the broker's own answer can
// delete a copy), keeps serving, and retries failed writes with backoff. One
// prober polls the broker's /readyz with a capped, jittered backoff, and the
// broker informers wait for it instead of hammering the server; when the broker
// answers again they relist and the syncer reconciles everything, so the changes
// made on every side meanwhile converge, none lost and none duplicated.
//
// # Metrics and logs
//
// See Metrics: writes by type, direction, operation and result; objects left alone
// by reason; the queue depth; whether the broker answers. Logs go to Config.Log
// with the keys type, direction, item, operation, object and error.
package syncer
