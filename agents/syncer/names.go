package syncer

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The syncer's bookkeeping on the objects it writes. Together with
// submv1.ClusterIDLabel they let a restarted syncer recognise, and adopt, what an
// earlier run wrote, so that nothing is duplicated.
const (
	// LabelOriginNamespace records, on broker objects and on their local copies, the
	// namespace of the source object in its own cluster (Submariner's label name).
	LabelOriginNamespace = "submariner-io/originatingNamespace"
	// AnnotationOriginName records, on broker objects and on their local copies, the
	// name of the source object in its own cluster. It is an annotation because names
	// may be longer than a label value.
	AnnotationOriginName = "syncer.submariner.io/origin-name"
	// LabelCopy marks a local copy of a broker object (value "true"). Copies are never
	// synced back up to the broker.
	LabelCopy = "syncer.submariner.io/copy"
	// AnnotationBrokerName records, on a local copy, the name of the broker object it
	// copies; a copy whose broker object is gone is deleted.
	AnnotationBrokerName = "syncer.submariner.io/broker-name"
)

// hashLen is the number of hex digits of the hash that keeps shortened names apart.
const hashLen = 10

// BrokerNameFunc names, on the broker, the object name in namespace of cluster
// clusterID. It must be a pure function of its arguments: the syncer calls it again
// after a restart and relies on getting the same name.
type BrokerNameFunc func(clusterID, namespace, name string) string

// DefaultBrokerName returns "<name>.<namespace>.<clusterID>". Namespaces and
// cluster IDs are RFC 1123 labels, which contain no dots, so the name tells its
// origin apart from every other cluster's and namespace's objects: two different
// sources never get the same broker name. When the result would be longer than a
// DNS subdomain allows (253 characters), the object name is cut short and followed
// by "-" and 10 hex digits of the SHA-256 of all three parts.
func DefaultBrokerName(clusterID, namespace, name string) string {
	suffix := "." + namespace + "." + clusterID
	if len(name)+len(suffix) <= validation.DNS1123SubdomainMaxLength {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(clusterID + "/" + namespace + "/" + name))
	hash := hex.EncodeToString(sum[:])[:hashLen]
	keep := validation.DNS1123SubdomainMaxLength - len(suffix) - len(hash) - 1
	if keep < 0 {
		keep = 0
	}
	// A DNS label may not end in '-' and a subdomain may not have an empty label,
	// so the cut must not leave '.' or '-' in front of "-<hash>".
	short := strings.TrimRight(name[:min(keep, len(name))], ".-")
	if short == "" {
		return hash + suffix
	}
	return short + "-" + hash + suffix
}

// KeepName is a BrokerNameFunc that leaves names as they are. Use it only for
// objects whose names already contain the cluster ID (Submariner names a cluster's
// Endpoint "<clusterID>-<cable name>"). Should two clusters still publish the same
// name, the syncer refuses to overwrite the other cluster's object and reports the
// conflict.
func KeepName(_, _, name string) string { return name }
