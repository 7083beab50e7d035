// Package broker implements `subctl deploy-broker`: it turns a Kubernetes API server
// into the clusterset's broker (our CRDs and the MCS CRDs, the namespace
// submariner-k8s-broker, RBAC for the cluster identities and the joiner, the
// admission policies, the IPsec pre-shared key and the Globalnet settings) and
// writes broker-info.subm, the secret that lets clusters join.
package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/submariner-go/submariner/crds"
	submv1 "github.com/submariner-go/submariner/crds/v1"
	"github.com/submariner-go/submariner/manifests"
	"github.com/submariner-go/submariner/subctl/apply"
	"github.com/submariner-go/submariner/subctl/brokerinfo"
	"github.com/submariner-go/submariner/subctl/cluster"
	"github.com/submariner-go/submariner/subctl/globalnet"
	"github.com/submariner-go/submariner/subctl/progress"
	"github.com/submariner-go/submariner/subctl/render"
)

// InventoryName is the ConfigMap in the broker namespace that records what
// deploy-broker applied.
const InventoryName = "submariner-broker-inventory"

// DefaultTokenValidity is how long the tokens subctl makes stay valid.
const DefaultTokenValidity = 365 * 24 * time.Hour

// Options are deploy-broker's flags.
type Options struct {
	Cluster                     cluster.Options
	Globalnet                   bool
	GlobalnetCIDRRange          string
	DefaultGlobalnetClusterSize int
	BrokerURL                   string
	Output                      string
	TokenValidity               time.Duration

	globalRange netip.Prefix
}

// AddFlags registers the flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Cluster.AddFlags(fs, "the broker's")
	fs.BoolVar(&o.Globalnet, "globalnet", false, "give every cluster a global CIDR from --globalnet-cidr-range, so that clusters with overlapping CIDRs can join")
	fs.StringVar(&o.GlobalnetCIDRRange, "globalnet-cidr-range", globalnet.DefaultCIDRRange, "the range the clusters' global CIDRs are allocated from")
	fs.IntVar(&o.DefaultGlobalnetClusterSize, "default-globalnet-cluster-size", globalnet.DefaultClusterSize, "addresses per cluster's global CIDR, a power of two (65536 is a /16)")
	fs.StringVar(&o.BrokerURL, "broker-url", "", "the broker API server's URL as the clusters reach it (default the kubeconfig's server)")
	fs.StringVarP(&o.Output, "output", "o", brokerinfo.FileName, "where to write the broker-info file (a previous one is kept with a time suffix)")
	fs.DurationVar(&o.TokenValidity, "token-validity", DefaultTokenValidity, "how long the joiner token in the broker-info file stays valid")
}

// Validate checks the flags before anything is changed.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.Cluster.Validate())
	if o.Globalnet {
		p, err := globalnet.ParseRange(o.GlobalnetCIDRRange)
		if err != nil {
			errs = append(errs, fmt.Errorf("--globalnet-cidr-range: %w", err))
		}
		o.globalRange = p
		bits, err := globalnet.PrefixBits(o.DefaultGlobalnetClusterSize)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--default-globalnet-cluster-size: %w", err))
		case p.IsValid() && bits < p.Bits():
			errs = append(errs, fmt.Errorf("--default-globalnet-cluster-size %d is larger than --globalnet-cidr-range %s: use at most %d",
				o.DefaultGlobalnetClusterSize, p, 1<<(32-p.Bits())))
		}
	}
	if o.BrokerURL != "" {
		if err := brokerinfo.ValidateURL(o.BrokerURL); err != nil {
			errs = append(errs, fmt.Errorf("--broker-url: %w", err))
		}
	}
	if o.TokenValidity < 10*time.Minute {
		errs = append(errs, fmt.Errorf("--token-validity %v is shorter than the API server's minimum of 10m", o.TokenValidity))
	}
	if o.Output == "" {
		errs = append(errs, errors.New("--output is empty: name the broker-info file to write"))
	}
	return errors.Join(errs...)
}

// Run deploys the broker and writes the broker-info file.
func (o *Options) Run(ctx context.Context, rep *progress.Reporter) error {
	c, err := o.Cluster.Connect()
	if err != nil {
		return err
	}
	return Deploy(ctx, rep, c, o)
}

// Deploy deploys the broker into c as o says.
func Deploy(ctx context.Context, rep *progress.Reporter, c *cluster.Cluster, o *Options) error {
	if err := rep.Run("Checking the broker's API server at "+c.Config.Host, func(*progress.Step) error {
		if _, err := c.Kube.Discovery().ServerVersion(); err != nil {
			return fmt.Errorf("cannot reach the broker's API server at %s: %w", c.Config.Host, err)
		}
		return nil
	}); err != nil {
		return err
	}
	ns := submv1.BrokerNamespace
	gn := globalnet.Broker{Kube: c.Kube, Namespace: ns}
	// The Globalnet settings cannot change under joined clusters: check before
	// changing anything.
	if cur, _, err := gn.Read(ctx); err == nil {
		if err := checkGlobalnetChange(cur, o); err != nil {
			return err
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}

	if err := rep.Run("Waiting for the CRDs to be established", func(*progress.Step) error {
		return crds.Install(ctx, c.Config)
	}); err != nil {
		return err
	}
	if err := rep.Run("Applying the broker namespace, RBAC and admission policies", func(*progress.Step) error {
		objs, err := render.Broker()
		if err != nil {
			return err
		}
		a := &apply.Applier{Dynamic: c.Dynamic, Mapper: c.Mapper}
		_, err = a.Sync(ctx, apply.Inventory{Namespace: ns, Name: InventoryName}, objs, nil,
			map[string]string{render.ManagedByLabel: render.ManagedByValue}, render.ManagedByValue)
		return err
	}); err != nil {
		return err
	}
	if err := rep.Run("Recording the Globalnet settings", func(*progress.Step) error {
		return writeGlobalnet(ctx, c, o)
	}); err != nil {
		return err
	}
	var psk []byte
	if err := rep.Run("Getting the IPsec pre-shared key", func(*progress.Step) error {
		var err error
		psk, err = ensurePSK(ctx, c)
		return err
	}); err != nil {
		return err
	}
	var token *authenticationv1.TokenRequest
	if err := rep.Run("Creating the joiner's token", func(*progress.Step) error {
		var err error
		token, err = Token(ctx, c, manifests.BrokerJoiner, o.TokenValidity)
		return err
	}); err != nil {
		return err
	}
	if left := time.Until(token.Status.ExpirationTimestamp.Time); left < o.TokenValidity-time.Hour {
		rep.Warn("the broker's API server shortened the joiner token's validity to %v (until %s): its --service-account-max-token-expiration caps it",
			left.Round(time.Hour), token.Status.ExpirationTimestamp.UTC().Format(time.RFC3339))
	}
	url := o.BrokerURL
	if url == "" {
		url = c.Config.Host
	}
	ca, err := caOf(c.Config)
	if err != nil {
		return err
	}
	info := &brokerinfo.Info{
		BrokerURL:          url,
		BrokerNamespace:    ns,
		CA:                 string(ca),
		JoinerToken:        token.Status.Token,
		JoinerTokenExpires: token.Status.ExpirationTimestamp.UTC(),
		IPsecPSK:           psk,
		Globalnet:          brokerinfo.Globalnet{Enabled: o.Globalnet},
		CreatedAt:          time.Now().UTC().Truncate(time.Second),
	}
	if o.Globalnet {
		info.Globalnet.CIDRRange = o.globalRange.String()
		info.Globalnet.ClusterSize = o.DefaultGlobalnetClusterSize
	}
	return rep.Run("Writing "+o.Output, func(*progress.Step) error {
		backup, err := brokerinfo.WriteFile(o.Output, info, time.Now())
		if backup != "" {
			rep.Info("the previous file is kept as %s", backup)
		}
		return err
	})
}

// checkGlobalnetChange refuses to change the Globalnet settings once clusters hold
// global CIDRs.
func checkGlobalnetChange(cur globalnet.Info, o *Options) error {
	if len(cur.Clusters) == 0 {
		return nil
	}
	want := desiredGlobalnet(o)
	if cur.Enabled == want.Enabled && cur.CIDRRange == want.CIDRRange && cur.ClusterSize == want.ClusterSize {
		return nil
	}
	describe := func(i globalnet.Info) string {
		if !i.Enabled {
			return "Globalnet off"
		}
		return fmt.Sprintf("Globalnet on, range %s, %d addresses per cluster", i.CIDRRange, i.ClusterSize)
	}
	return fmt.Errorf("the broker has %s and %d clusters hold global CIDRs; this run asks for %s: re-run with the broker's settings (for example --globalnet --globalnet-cidr-range %s), or uninstall those clusters first",
		describe(cur), len(cur.Clusters), describe(want), cur.CIDRRange)
}

func desiredGlobalnet(o *Options) globalnet.Info {
	if !o.Globalnet {
		return globalnet.Info{}
	}
	return globalnet.Info{Enabled: true, CIDRRange: o.globalRange, ClusterSize: o.DefaultGlobalnetClusterSize}
}

// writeGlobalnet creates or updates the Globalnet ConfigMap with the settings,
// keeping the recorded allocations.
func writeGlobalnet(ctx context.Context, c *cluster.Cluster, o *Options) error {
	api := c.Kube.CoreV1().ConfigMaps(submv1.BrokerNamespace)
	want := desiredGlobalnet(o)
	cm, err := api.Get(ctx, globalnet.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: globalnet.ConfigMapName, Namespace: submv1.BrokerNamespace,
				Labels: map[string]string{render.ManagedByLabel: render.ManagedByValue}},
			Data: want.Data(),
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating %s: %w", globalnet.ConfigMapName, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", globalnet.ConfigMapName, err)
	}
	cur, err := globalnet.ParseInfo(cm.Data)
	if err != nil {
		return err
	}
	if err := checkGlobalnetChange(cur, o); err != nil {
		return err
	}
	want.Clusters = cur.Clusters
	data := want.Data()
	if fmt.Sprint(data) == fmt.Sprint(cm.Data) {
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = data
	if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating %s: %w", globalnet.ConfigMapName, err)
	}
	return nil
}

// ensurePSK returns the clusterset's pre-shared key, kept in a Secret of the broker
// namespace that only administrators can read, creating it on the first run so
// that re-running deploy-broker keeps the key the clusters use.
func ensurePSK(ctx context.Context, c *cluster.Cluster) ([]byte, error) {
	api := c.Kube.CoreV1().Secrets(submv1.BrokerNamespace)
	s, err := api.Get(ctx, manifests.PSKSecretName, metav1.GetOptions{})
	if err == nil {
		if psk := s.Data[manifests.PSKSecretKey]; len(psk) == brokerinfo.PSKLength {
			return psk, nil
		}
		return nil, fmt.Errorf("the broker's Secret %s/%s has no %d-byte %q: delete it to have a new key made (every cluster must then join again)",
			submv1.BrokerNamespace, manifests.PSKSecretName, brokerinfo.PSKLength, manifests.PSKSecretKey)
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading the IPsec pre-shared key: %w", err)
	}
	psk := make([]byte, brokerinfo.PSKLength)
	if _, err := rand.Read(psk); err != nil {
		return nil, fmt.Errorf("generating the IPsec pre-shared key: %w", err)
	}
	_, err = api.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: manifests.PSKSecretName, Namespace: submv1.BrokerNamespace,
			Labels: map[string]string{render.ManagedByLabel: render.ManagedByValue}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{manifests.PSKSecretKey: psk},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return ensurePSK(ctx, c) // another deploy-broker made it first: use that one
	}
	if err != nil {
		return nil, fmt.Errorf("storing the IPsec pre-shared key: %w", err)
	}
	return psk, nil
}

// Token requests a token of the ServiceAccount name in the broker namespace,
// valid for validity (the API server may cap it).
func Token(ctx context.Context, c *cluster.Cluster, name string, validity time.Duration) (*authenticationv1.TokenRequest, error) {
	secs := int64(validity / time.Second)
	tr, err := c.Kube.CoreV1().ServiceAccounts(submv1.BrokerNamespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for %s/%s: %w", submv1.BrokerNamespace, name, err)
	}
	return tr, nil
}

// caOf returns the PEM CA bundle that verifies cfg's server.
func caOf(cfg *rest.Config) ([]byte, error) {
	if len(cfg.CAData) > 0 {
		return cfg.CAData, nil
	}
	if cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the broker's CA from %s: %w", cfg.CAFile, err)
		}
		return b, nil
	}
	return nil, nil
}
