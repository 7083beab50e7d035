// Package export implements `subctl export service` and `subctl unexport service`:
// they create and delete the MCS v1beta1 ServiceExport named like the Service, which
// the lighthouse agent turns into a ServiceImport in every cluster of the clusterset.
package export

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/submariner-go/submariner/subctl/cluster"
)

// Validate checks a Service name and namespace.
func Validate(name, namespace string) error {
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return fmt.Errorf("service name %q is not valid (%s): give the name of an existing Service", name, errs[0])
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q is not valid (%s): give the Service's namespace with -n", namespace, errs[0])
	}
	return nil
}

// Export creates the ServiceExport of Service namespace/name. It reports whether it
// created one (false: the Service was exported already). A missing Service is an
// error that says so, and nothing is created.
func Export(ctx context.Context, c *cluster.Cluster, namespace, name string) (bool, error) {
	if _, err := c.Kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return false, fmt.Errorf("service %s/%s does not exist: create it first, or check the name and the namespace (-n)", namespace, name)
	} else if err != nil {
		return false, fmt.Errorf("reading service %s/%s: %w", namespace, name, err)
	}
	se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	err := c.Client.Create(ctx, se)
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating ServiceExport %s/%s: %w", namespace, name, err)
	}
	return true, nil
}

// Unexport deletes the ServiceExport of namespace/name and reports whether there
// was one. It does not need the Service (it may be gone already); when neither
// exists, the error says so.
func Unexport(ctx context.Context, c *cluster.Cluster, namespace, name string) (bool, error) {
	se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	err := c.Client.Delete(ctx, se)
	if err == nil {
		return true, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting ServiceExport %s/%s: %w", namespace, name, err)
	}
	if _, err := c.Kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return false, fmt.Errorf("service %s/%s does not exist and is not exported: check the name and the namespace (-n)", namespace, name)
	}
	return false, nil
}
