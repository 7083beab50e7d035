// Package globalnet keeps the broker's Globalnet settings and the clusters' global
// CIDRs in the ConfigMap submariner-globalnet-info (keys as Submariner's), and
// allocates a cluster's global CIDR from the broker's range: first fit, aligned
// blocks, written with the resourceVersion read, so that two joins running at the
// same time can never get the same block.
package globalnet

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

// The ConfigMap and its keys.
const (
	ConfigMapName  = "submariner-globalnet-info"
	KeyEnabled     = "globalnetEnabled"
	KeyCIDRRange   = "globalnetCidrRange"
	KeyClusterSize = "globalnetClusterSize"
	KeyClusterInfo = "clusterinfo"
)

// Defaults (DESIGN.md section 2).
const (
	DefaultCIDRRange   = "242.0.0.0/8"
	DefaultClusterSize = 65536
	// MinClusterSize is the smallest global CIDR we hand out: a /30.
	MinClusterSize = 4
)

// Allocation is one cluster's global CIDR, as Submariner records it.
type Allocation struct {
	ClusterID   string   `json:"cluster_id"`
	GlobalCIDRs []string `json:"global_cidr"`
}

// Info is the content of the ConfigMap.
type Info struct {
	Enabled     bool
	CIDRRange   netip.Prefix
	ClusterSize int
	Clusters    []Allocation
}

// ParseInfo reads the ConfigMap's data.
func ParseInfo(data map[string]string) (Info, error) {
	var info Info
	var err error
	if info.Enabled, err = strconv.ParseBool(data[KeyEnabled]); err != nil {
		return Info{}, fmt.Errorf("%s %s=%q is not true or false", ConfigMapName, KeyEnabled, data[KeyEnabled])
	}
	if !info.Enabled {
		return info, nil
	}
	if info.CIDRRange, err = ParseRange(data[KeyCIDRRange]); err != nil {
		return Info{}, fmt.Errorf("%s %s: %w", ConfigMapName, KeyCIDRRange, err)
	}
	if info.ClusterSize, err = strconv.Atoi(data[KeyClusterSize]); err != nil {
		return Info{}, fmt.Errorf("%s %s=%q is not a number", ConfigMapName, KeyClusterSize, data[KeyClusterSize])
	}
	if s := data[KeyClusterInfo]; s != "" {
		if err := json.Unmarshal([]byte(s), &info.Clusters); err != nil {
			return Info{}, fmt.Errorf("%s %s is not a JSON list of {cluster_id, global_cidr}: %w", ConfigMapName, KeyClusterInfo, err)
		}
	}
	return info, nil
}

// Data renders info as the ConfigMap's data, clusters sorted by ID.
func (info Info) Data() map[string]string {
	data := map[string]string{KeyEnabled: strconv.FormatBool(info.Enabled)}
	if !info.Enabled {
		return data
	}
	data[KeyCIDRRange] = info.CIDRRange.String()
	data[KeyClusterSize] = strconv.Itoa(info.ClusterSize)
	clusters := append([]Allocation{}, info.Clusters...)
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].ClusterID < clusters[j].ClusterID })
	b, _ := json.Marshal(clusters)
	data[KeyClusterInfo] = string(b)
	return data
}

// ParseRange parses and checks a Globalnet CIDR range (or a cluster's global CIDR):
// IPv4, and not unspecified, loopback, link-local or multicast space.
func ParseRange(s string) (netip.Prefix, error) {
	p, err := submv1.ParseCIDR("Globalnet CIDR", s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("Globalnet CIDR %s is not IPv4: Globalnet hands out IPv4 addresses, for example 242.0.0.0/8", p)
	}
	for _, r := range reserved {
		if p.Overlaps(r.prefix) {
			return netip.Prefix{}, fmt.Errorf("Globalnet CIDR %s overlaps %s (%s): choose a range such as 242.0.0.0/8", p, r.prefix, r.what)
		}
	}
	return p, nil
}

// PrefixBits returns the prefix length of a block of size addresses. size must be
// a power of two of at least MinClusterSize; the error suggests one.
func PrefixBits(size int) (int, error) {
	if size < MinClusterSize {
		return 0, fmt.Errorf("Globalnet cluster size %d is too small: use at least %d", size, MinClusterSize)
	}
	if size > 1<<31 {
		return 0, fmt.Errorf("Globalnet cluster size %d is larger than half the IPv4 space", size)
	}
	if size&(size-1) != 0 {
		up := 1 << bits.Len(uint(size))
		return 0, fmt.Errorf("Globalnet cluster size %d is not a power of two: use %d or %d", size, up/2, up)
	}
	return 32 - bits.TrailingZeros(uint(size)), nil
}

// reserved lists the IPv4 space a global CIDR may not use (Submariner refuses the
// same): EndpointSlices reject link-local addresses, and the others are not unicast
// addresses that can be routed between clusters.
var reserved = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\", unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, which EndpointSlices reject"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// lastAddr returns the last address of p as a number.
func lastAddr(p netip.Prefix) uint32 {
	return u32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1)
}

// ConflictError says that a requested global CIDR overlaps another cluster's.
type ConflictError struct {
	Requested netip.Prefix
	ClusterID string
	Other     string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("global CIDR %s overlaps cluster %s's global CIDR %s: choose another --globalnet-cidr, or leave it out to have one allocated", e.Requested, e.ClusterID, e.Other)
}

// Plan decides the global CIDR of clusterID and returns it with the updated Info.
// It keeps the cluster's current allocation when it has one, requested is not set
// and size is 0 or the current block's size; it takes requested when that overlaps no other cluster's;
// otherwise it takes the first free block of size addresses, aligned to its size,
// inside the range. size 0 means info.ClusterSize. Plan is pure.
func Plan(info Info, clusterID string, requested netip.Prefix, size int) (netip.Prefix, Info, error) {
	if !info.Enabled {
		return netip.Prefix{}, info, errors.New("Globalnet is not enabled on the broker: deploy the broker with --globalnet to use it")
	}
	var others []netip.Prefix
	var owners []string
	var current []string
	for _, a := range info.Clusters {
		if a.ClusterID == clusterID {
			current = a.GlobalCIDRs
			continue
		}
		for _, c := range a.GlobalCIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return netip.Prefix{}, info, fmt.Errorf("%s records global CIDR %q for cluster %s, which is not a CIDR", ConfigMapName, c, a.ClusterID)
			}
			others = append(others, p.Masked())
			owners = append(owners, a.ClusterID)
		}
	}
	var chosen netip.Prefix
	switch {
	case requested.IsValid():
		for i, o := range others {
			if o.Overlaps(requested) {
				return netip.Prefix{}, info, &ConflictError{Requested: requested, ClusterID: owners[i], Other: o.String()}
			}
		}
		chosen = requested
	case len(current) == 1:
		p, err := netip.ParsePrefix(current[0])
		if err == nil && !overlapsAny(p, others) && (size == 0 || 1<<(32-p.Bits()) == size) {
			chosen = p
			break
		}
		fallthrough
	default:
		if size == 0 {
			size = info.ClusterSize
		}
		bitsLen, err := PrefixBits(size)
		if err != nil {
			return netip.Prefix{}, info, err
		}
		if bitsLen < info.CIDRRange.Bits() {
			return netip.Prefix{}, info, fmt.Errorf("Globalnet cluster size %d does not fit the range %s", size, info.CIDRRange)
		}
		chosen, err = firstFit(info.CIDRRange, bitsLen, others)
		if err != nil {
			return netip.Prefix{}, info, err
		}
	}
	out := info
	out.Clusters = nil
	for _, a := range info.Clusters {
		if a.ClusterID != clusterID {
			out.Clusters = append(out.Clusters, a)
		}
	}
	out.Clusters = append(out.Clusters, Allocation{ClusterID: clusterID, GlobalCIDRs: []string{chosen.String()}})
	sort.Slice(out.Clusters, func(i, j int) bool { return out.Clusters[i].ClusterID < out.Clusters[j].ClusterID })
	return chosen, out, nil
}

// Release returns info without clusterID's allocation.
func Release(info Info, clusterID string) Info {
	out := info
	out.Clusters = nil
	for _, a := range info.Clusters {
		if a.ClusterID != clusterID {
			out.Clusters = append(out.Clusters, a)
		}
	}
	return out
}

func overlapsAny(p netip.Prefix, others []netip.Prefix) bool {
	for _, o := range others {
		if o.Overlaps(p) {
			return true
		}
	}
	return false
}

// firstFit returns the lowest block /bitsLen inside rng that overlaps none of taken.
func firstFit(rng netip.Prefix, bitsLen int, taken []netip.Prefix) (netip.Prefix, error) {
	size := uint64(1) << (32 - bitsLen)
	start := uint64(u32(rng.Masked().Addr()))
	end := uint64(lastAddr(rng))
	sorted := append([]netip.Prefix(nil), taken...)
	sort.Slice(sorted, func(i, j int) bool { return u32(sorted[i].Addr()) < u32(sorted[j].Addr()) })
	for cand := start; cand+size-1 <= end; {
		candLast := cand + size - 1
		next := uint64(0)
		for _, t := range sorted {
			ts, te := uint64(u32(t.Addr())), uint64(lastAddr(t))
			if ts <= candLast && te >= cand {
				// Skip past this allocation, to the next aligned block.
				if n := (te/size + 1) * size; n > next {
					next = n
				}
			}
		}
		if next == 0 {
			return netip.PrefixFrom(addr(uint32(cand)), bitsLen), nil
		}
		cand = next
	}
	return netip.Prefix{}, fmt.Errorf("the Globalnet range %s has no free block of %d addresses left: use a smaller --globalnet-cluster-size or uninstall clusters that left", rng, size)
}

// Broker reads and writes the ConfigMap on the broker.
type Broker struct {
	Kube      kubernetes.Interface
	Namespace string
}

// Read returns the broker's Globalnet Info.
func (b Broker) Read(ctx context.Context) (Info, *corev1.ConfigMap, error) {
	cm, err := b.Kube.CoreV1().ConfigMaps(b.Namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return Info{}, nil, fmt.Errorf("reading the Globalnet settings %s/%s on the broker: %w", b.Namespace, ConfigMapName, err)
	}
	info, err := ParseInfo(cm.Data)
	return info, cm, err
}

// conflictBackoff retries writes that lost a race to another join.
var conflictBackoff = wait.Backoff{Steps: 60, Duration: 20 * time.Millisecond, Factor: 1.3, Jitter: 1, Cap: time.Second}

// Allocate reserves clusterID's global CIDR (see Plan) and returns it. Before
// planning it forgets the allocations of clusters for which gone reports true (the
// clusters that left), so their blocks are reused. The ConfigMap is updated with
// the resourceVersion it was read at and the whole step repeats when another
// writer came first, so concurrent allocations never overlap.
func (b Broker) Allocate(ctx context.Context, clusterID string, requested netip.Prefix, size int, gone func(ctx context.Context, clusterID string) (bool, error)) (netip.Prefix, error) {
	var chosen netip.Prefix
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		info, cm, err := b.Read(ctx)
		if err != nil {
			return err
		}
		if gone != nil {
			for _, a := range info.Clusters {
				if a.ClusterID == clusterID {
					continue
				}
				left, err := gone(ctx, a.ClusterID)
				if err != nil {
					return err
				}
				if left {
					info = Release(info, a.ClusterID)
				}
			}
		}
		var next Info
		chosen, next, err = Plan(info, clusterID, requested, size)
		if err != nil {
			return err
		}
		if equalData(cm.Data, next.Data()) {
			return nil
		}
		cm = cm.DeepCopy()
		cm.Data = next.Data()
		_, err = b.Kube.CoreV1().ConfigMaps(b.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("recording the global CIDR of cluster %s in %s/%s: %w", clusterID, b.Namespace, ConfigMapName, err)
		}
		return err
	})
	if err != nil {
		return netip.Prefix{}, err
	}
	return chosen, nil
}

// Free removes clusterID's allocation, if it has one, with the same optimistic
// concurrency as Allocate.
func (b Broker) Free(ctx context.Context, clusterID string) error {
	return retry.RetryOnConflict(conflictBackoff, func() error {
		info, cm, err := b.Read(ctx)
		if err != nil {
			return err
		}
		next := Release(info, clusterID)
		if equalData(cm.Data, next.Data()) {
			return nil
		}
		cm = cm.DeepCopy()
		cm.Data = next.Data()
		_, err = b.Kube.CoreV1().ConfigMaps(b.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("releasing the global CIDR of cluster %s in %s/%s: %w", clusterID, b.Namespace, ConfigMapName, err)
		}
		return err
	})
}

func equalData(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
