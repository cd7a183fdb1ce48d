//go:build e2e

package e2e

import (
	"bufio"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// TestServersStayOffTheExternalInterface: the fake store, the API server
// and kubelet listen on the address the cluster scripts made (a dummy
// interface) and on loopback, never on the machine's external interface:
// nothing the tests run is reachable from outside the machine.
func TestServersStayOffTheExternalInterface(t *testing.T) {
	iface := defaultRouteInterface(t)
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(awsURL)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{"the fake store": u.Port(), "the API server": "6443", "kubelet": "10250"}
	checked := 0
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		if ipn.IP.String() == u.Hostname() {
			t.Errorf("the fake store's address %s is on the external interface %s", u.Hostname(), iface)
		}
		for what, port := range ports {
			addr := net.JoinHostPort(ipn.IP.String(), port)
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("%s answers on the external interface %s at %s", what, iface, addr)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Skipf("the default route's interface %s has no IPv4 address to check", iface)
	}
	// The same ports do answer at the node's own address: the check above
	// fails for the right reason.
	if c, err := net.DialTimeout("tcp", u.Host, 2*time.Second); err != nil {
		t.Errorf("the fake store does not answer at %s: %v", u.Host, err)
	} else {
		c.Close()
	}
}

// defaultRouteInterface names the interface of the IPv4 default route.
func defaultRouteInterface(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[1] == "00000000" && fields[0] != "Iface" {
			return fields[0]
		}
	}
	t.Skip("this machine has no IPv4 default route: no external interface to check")
	return ""
}
