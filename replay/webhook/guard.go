package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
)

// ErrForbiddenAddress is wrapped by every refusal to reach an address.
var ErrForbiddenAddress = errors.New("forbidden address")

// Policy says which addresses deliveries may reach. By default only global
// unicast addresses: no loopback, private, carrier-grade NAT, link-local,
// multicast, documentation, benchmarking or other special-purpose range.
// AllowPrivate (`hindsight dev`, or --allow-private-endpoints) also lets
// loopback, RFC 1918, CGNAT and IPv6 unique-local addresses through. In
// every mode: IPv6 addresses that carry an IPv4 address (mapped, compatible,
// NAT64, 6to4, Teredo) are judged by what they carry as well, and the cloud
// metadata services are refused.
type Policy struct {
	AllowPrivate bool
}

func prefixes(ps ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

var (
	// metadata are cloud instance metadata and platform endpoints outside
	// the link-local range, refused in every mode.
	metadata = []netip.Addr{
		netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
		netip.MustParseAddr("168.63.129.16"),   // Azure platform (WireServer)
	}
	// neverGlobal are special-purpose ranges (IANA's registries) that no
	// webhook lives in, refused in every mode.
	neverGlobal = prefixes(
		"0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"100::/64", "2001:2::/48", "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20", "fec0::/10",
	)
	cgnat = netip.MustParsePrefix("100.64.0.0/10")

	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	teredo     = netip.MustParsePrefix("2001::/32")
	compatible = netip.MustParsePrefix("::/96")
)

// CheckIP refuses an address the policy does not allow.
func (p Policy) CheckIP(ip netip.Addr) error {
	ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if !ip.IsValid() {
		return fmt.Errorf("%w: not an IP address", ErrForbiddenAddress)
	}
	for _, v4 := range embeddedIPv4(ip) {
		if err := p.CheckIP(v4); err != nil {
			return fmt.Errorf("%w (carried by %s)", err, ip)
		}
	}
	refuse := func(why string) error { return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, ip, why) }
	switch {
	case ip.IsUnspecified():
		return refuse("unspecified")
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return refuse("link-local (cloud metadata lives there)")
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast():
		return refuse("multicast")
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return refuse("broadcast")
	case slices.Contains(metadata, ip):
		return refuse("a cloud metadata service")
	case inAny(neverGlobal, ip):
		return refuse("a special-purpose address")
	}
	if p.AllowPrivate {
		return nil
	}
	switch {
	case ip.IsLoopback():
		return refuse("loopback")
	case ip.IsPrivate():
		return refuse("private")
	case cgnat.Contains(ip):
		return refuse("carrier-grade NAT")
	case !ip.IsGlobalUnicast():
		return refuse("not global unicast")
	}
	return nil
}

func inAny(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// embeddedIPv4 returns the IPv4 addresses an IPv6 address reaches through a
// translation or tunnel: NAT64 (RFC 6052, the well-known and the local-use
// /48 prefix), 6to4 (RFC 3056), Teredo (RFC 4380: server and client) and
// the deprecated IPv4-compatible form ::a.b.c.d.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	v4 := func(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }
	switch {
	case nat64.Contains(ip):
		return []netip.Addr{v4(b[12], b[13], b[14], b[15])}
	case nat64Local.Contains(ip):
		// A /48 prefix puts the address in bits 48-63 and 72-87, around
		// the reserved octet 8.
		return []netip.Addr{v4(b[6], b[7], b[9], b[10])}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(b[2], b[3], b[4], b[5])}
	case teredo.Contains(ip):
		return []netip.Addr{v4(b[4], b[5], b[6], b[7]), v4(^b[12], ^b[13], ^b[14], ^b[15])}
	case compatible.Contains(ip) && !ip.IsUnspecified() && !ip.IsLoopback():
		return []netip.Addr{v4(b[12], b[13], b[14], b[15])}
	}
	return nil
}

// ValidateURL checks an endpoint URL when it is created or changed: http or
// https, a host, and no address the policy refuses, literal or resolved now.
// A name that does not resolve yet is accepted; every connection checks the
// addresses again after resolving, so a later change of DNS gains nothing.
func (p Policy) ValidateURL(ctx context.Context, raw string, lookup lookupFunc) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url: scheme %q, want http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("url: no host")
	}
	if u.User != nil {
		return nil, errors.New("url: credentials in the URL are not allowed; put them in the path or use the signature")
	}
	if len(raw) > 2048 {
		return nil, errors.New("url: longer than 2048 characters")
	}
	host := strings.TrimSuffix(strings.TrimPrefix(u.Hostname(), "["), "]")
	ips := []netip.Addr{}
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = append(ips, ip)
	} else if lookup != nil {
		ips, _ = lookup(ctx, host)
	}
	for _, ip := range ips {
		if err := p.CheckIP(ip); err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
	}
	return u, nil
}

// lookupFunc resolves a host name; tests replace it to answer as a
// rebinding DNS server would.
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

func defaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// dialer connects only to addresses the policy allows. The name is resolved
// here, at connection time, and every address is checked before it is
// dialed, then checked again by the socket's Control hook on the address
// actually connected: a name that resolved to a public address when the
// endpoint was created and to loopback now is refused (DNS rebinding).
type dialer struct {
	policy Policy
	lookup lookupFunc
	net    net.Dialer
}

func newDialer(p Policy, lookup lookupFunc) *dialer {
	d := &dialer{policy: p, lookup: lookup}
	d.net.Control = func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, host)
		}
		return p.CheckIP(ip)
	}
	return d
}

func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = d.lookup(ctx, host); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var firstErr error
	for _, ip := range ips {
		if err := d.policy.CheckIP(ip); err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		conn, err := d.net.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		firstErr = cmpErr(firstErr, err)
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("resolve %s: no addresses", host)
	}
	return nil, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
