// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 so that the
// test harness and the sandbox need no downloaded binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
