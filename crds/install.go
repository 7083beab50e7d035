package crds

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
)

// FieldManager is the server-side apply field manager of everything we install.
const FieldManager = "submariner"

// establishTimeout bounds the wait for the API server to serve a new CRD.
const establishTimeout = 2 * time.Minute

// Install applies our CRDs and the MCS CRDs to the cluster behind cfg (server-side
// apply, so re-running it is harmless and repairs drift) and waits until every one is
// established. An MCS CRD already installed at a newer schema revision is left alone,
// as the MCS API asks, so that we never downgrade another controller's CRD.
func Install(ctx context.Context, cfg *rest.Config) error {
	crds, err := All()
	if err != nil {
		return err
	}
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating apiextensions client: %w", err)
	}
	return InstallWith(ctx, client, crds)
}

// InstallWith applies crds through client and waits until they are established.
func InstallWith(ctx context.Context, client apiextensionsclient.Interface, crds []*apiextensionsv1.CustomResourceDefinition) error {
	api := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range crds {
		newer, err := hasNewerSchema(ctx, api, crd)
		if err != nil {
			return err
		}
		if newer {
			continue
		}
		body, err := json.Marshal(crd)
		if err != nil {
			return fmt.Errorf("encoding CRD %s: %w", crd.Name, err)
		}
		force := true
		if _, err := api.Patch(ctx, crd.Name, types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
			return fmt.Errorf("applying CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, api, crd.Name); err != nil {
			return err
		}
	}
	return nil
}

type crdGetter interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*apiextensionsv1.CustomResourceDefinition, error)
}

// hasNewerSchema reports whether the cluster already has crd at a higher MCS schema
// revision than the one we carry.
func hasNewerSchema(ctx context.Context, api crdGetter, crd *apiextensionsv1.CustomResourceDefinition) (bool, error) {
	ours, ok := schemaRevision(crd)
	if !ok {
		return false, nil
	}
	existing, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading CRD %s: %w", crd.Name, err)
	}
	theirs, ok := schemaRevision(existing)
	return ok && theirs > ours, nil
}

func schemaRevision(crd *apiextensionsv1.CustomResourceDefinition) (int, bool) {
	v, ok := crd.Labels[mcscrd.CustomResourceDefinitionSchemaRevisionLabel]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

func waitEstablished(ctx context.Context, api crdGetter, name string) error {
	var last *apiextensionsv1.CustomResourceDefinition
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, establishTimeout, true, func(ctx context.Context) (bool, error) {
		crd, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // transient: keep polling until the timeout
		}
		last = crd
		return condition(crd, apiextensionsv1.Established) && condition(crd, apiextensionsv1.NamesAccepted), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRD %s to be established: %w%s", name, err, describe(last))
	}
	return nil
}

func condition(crd *apiextensionsv1.CustomResourceDefinition, t apiextensionsv1.CustomResourceDefinitionConditionType) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == t {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

func describe(crd *apiextensionsv1.CustomResourceDefinition) string {
	if crd == nil {
		return ""
	}
	s := ""
	for _, c := range crd.Status.Conditions {
		if c.Status != apiextensionsv1.ConditionTrue {
			s += fmt.Sprintf("; %s is %s: %s", c.Type, c.Status, c.Message)
		}
	}
	return s
}
