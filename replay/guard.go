package replay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrForbiddenAddress is wrapped by every refusal to reach an address.
var ErrForbiddenAddress = errors.New("forbidden address")

// Policy says which addresses deliveries may reach. Link-local (cloud
// metadata), multicast, unspecified and reserved addresses are always
// refused; loopback, RFC 1918, CGNAT and IPv6 unique-local ones only when
// AllowPrivate is set (`hindsight dev`, or --allow-private-endpoints).
type Policy struct {
	AllowPrivate bool
}

var (
	cgnat    = netip.MustParsePrefix("100.64.0.0/10")
	thisNet  = netip.MustParsePrefix("0.0.0.0/8")
	reserved = netip.MustParsePrefix("240.0.0.0/4")
	nat64    = netip.MustParsePrefix("64:ff9b::/96")
)

// CheckIP refuses an address the policy does not allow.
func (p Policy) CheckIP(ip netip.Addr) error {
	ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if nat64.Contains(ip) {
		// 64:ff9b::a.b.c.d reaches a.b.c.d through a NAT64 gateway.
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	refuse := func(why string) error { return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, ip, why) }
	switch {
	case !ip.IsValid():
		return fmt.Errorf("%w: not an IP address", ErrForbiddenAddress)
	case ip.IsUnspecified() || (ip.Is4() && thisNet.Contains(ip)):
		return refuse("unspecified")
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return refuse("link-local (cloud metadata lives there)")
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast():
		return refuse("multicast")
	case ip.Is4() && (reserved.Contains(ip) || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})):
		return refuse("reserved")
	}
	if p.AllowPrivate {
		return nil
	}
	switch {
	case ip.IsLoopback():
		return refuse("loopback")
	case ip.IsPrivate():
		return refuse("private")
	case ip.Is4() && cgnat.Contains(ip):
		return refuse("carrier-grade NAT")
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
