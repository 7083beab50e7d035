package gateway

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

func TestMain(m *testing.M) {
	// controller-runtime's and client-go's packages log through global loggers;
	// the tests log what they need through their own.
	l := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	ctrl.SetLogger(l)
	klog.SetLogger(l)
	os.Exit(m.Run())
}
