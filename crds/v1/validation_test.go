package v1_test

import (
	"strings"
	"testing"

	submv1 "github.com/submariner-go/submariner/crds/v1"
)

func TestValidateClusterID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // substring of the error, "" for valid
	}{
		{id: "cluster1"},
		{id: "a"},
		{id: "c-1-x"},
		{id: strings.Repeat("c", 63)},
		{id: "", want: "empty"},
		{id: strings.Repeat("c", 64), want: "64 characters"},
		{id: "Cluster1", want: "RFC 1123"},
		{id: "-c", want: "RFC 1123"},
		{id: "c-", want: "RFC 1123"},
		{id: "c.d", want: "RFC 1123"},
		{id: "c_d", want: "RFC 1123"},
	} {
		err := submv1.ValidateClusterID(tc.id)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateClusterID(%q) = %v, want nil", tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateClusterID(%q) = %v, want an error containing %q", tc.id, err, tc.want)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "10.0.0.0/16", want: "10.0.0.0/16"},
		{in: "fd00::/64", want: "fd00::/64"},
		{in: "10.0.0.1/16", wantErr: "did you mean 10.0.0.0/16"},
		{in: "10.0.0.0", wantErr: "not a CIDR"},
		{in: "10.0.0.0/33", wantErr: "not a CIDR"},
	} {
		got, err := submv1.ParseCIDR("cluster CIDR", tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "cluster CIDR") {
				t.Errorf("ParseCIDR(%q) = %v, %v; want an error naming the cluster CIDR and containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseBackend(t *testing.T) {
	for _, b := range submv1.Backends {
		if got, err := submv1.ParseBackend(string(b)); err != nil || got != b {
			t.Errorf("ParseBackend(%q) = %q, %v", b, got, err)
		}
	}
	if _, err := submv1.ParseBackend("strongswan"); err == nil || !strings.Contains(err.Error(), "libreswan, wireguard, vxlan") {
		t.Errorf("ParseBackend(strongswan) = %v, want an error listing the drivers", err)
	}
}
