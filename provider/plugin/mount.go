package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/plugin/v1alpha1"
)

// keyTokens is where a plugin reads the pod's tokens, put back here from
// their typed, redacted form.
const keyTokens = provider.TokensKey

// defaultMode is the file mode plugins are told to use unless a class says
// otherwise, and permission is how they are told: the JSON of an
// os.FileMode, as the Secrets Store CSI Driver sends it.
const (
	defaultMode = 0o644
	permission  = "420"
)

// Plugin is one plugin, a provider.Provider named as its socket.
type Plugin struct {
	name   string
	client v1alpha1.CSIDriverProviderClient
	conn   *grpc.ClientConn
}

// Name implements provider.Provider.
func (p *Plugin) Name() string { return p.name }

// CanPin implements provider.Pinner: v1alpha1 has no way to ask for a
// version, so a plugin class cannot use versionPolicy Revision.
func (p *Plugin) CanPin() bool { return false }

// Fetch implements provider.Provider with one Mount call. A rotation check
// (req.Held) is a Mount call too, with the held versions as
// current_object_version: the protocol has no cheaper question, so a plugin
// class is checked at one Mount per volume and interval, and the driver
// writes nothing when the answer holds the files the volume has.
func (p *Plugin) Fetch(ctx context.Context, req *provider.Request) (*provider.Response, error) {
	mr, err := mountRequest(req)
	if err != nil {
		return nil, fmt.Errorf("%w: provider plugin %s: %v", provider.ErrInvalid, p.name, err)
	}
	resp, err := p.client.Mount(ctx, mr, grpc.WaitForReady(false))
	if err != nil {
		return nil, p.callError(ctx, req, err)
	}
	return answer(p.name, req, resp)
}

// mountRequest fills a MountRequest as the Secrets Store CSI Driver does:
// the class's parameters overlaid with every volume attribute kubelet sent,
// the tokens included; the node-publish secrets; the target; the default
// mode; and, for a check, the versions held.
func mountRequest(req *provider.Request) (*v1alpha1.MountRequest, error) {
	attrs := make(map[string]string, len(req.Parameters)+len(req.Attributes)+1)
	for k, v := range req.Parameters {
		attrs[k] = v
	}
	for k, v := range req.Attributes {
		attrs[k] = v
	}
	if len(req.Pod.Tokens) > 0 {
		type token struct {
			Token               string `json:"token"`
			ExpirationTimestamp string `json:"expirationTimestamp"`
		}
		tokens := make(map[string]token, len(req.Pod.Tokens))
		for aud, t := range req.Pod.Tokens {
			tokens[aud] = token{Token: t.Value, ExpirationTimestamp: t.ExpiresAt.UTC().Format(time.RFC3339)}
		}
		b, err := json.Marshal(tokens)
		if err != nil {
			return nil, errors.New("cannot encode the service-account tokens")
		}
		attrs[keyTokens] = string(b)
	}
	a, err := json.Marshal(attrs)
	if err != nil {
		return nil, errors.New("cannot encode the attributes")
	}
	// A nil map encodes as null, as the Secrets Store CSI Driver sends
	// for a volume without nodePublishSecretRef.
	s, err := json.Marshal(map[string]string(req.Secrets))
	if err != nil {
		return nil, errors.New("cannot encode the node-publish secrets")
	}
	mr := &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(s), TargetPath: req.Target, Permission: permission}
	if req.Held != nil {
		for _, o := range req.Held.Objects {
			mr.CurrentObjectVersion = append(mr.CurrentObjectVersion, &v1alpha1.ObjectVersion{Id: o.ID, Version: o.Version})
		}
	}
	return mr, nil
}

// maxVersionLen bounds an object id or version: they go into audit lines,
// events and the volume's record.
const maxVersionLen = 1024

// answer turns a plugin's Mount answer into the volume's content, or an
// error naming the plugin and what is wrong. The file set itself (paths,
// modes, collisions) is checked by the driver, as every provider's is.
func answer(name string, req *provider.Request, resp *v1alpha1.MountResponse) (*provider.Response, error) {
	if code := resp.GetError().GetCode(); code != "" {
		return nil, fmt.Errorf("%w: provider plugin %s answered with error code %q", provider.ErrUnavailable, name, redact(code, req))
	}
	if len(resp.GetFiles()) == 0 {
		return nil, fmt.Errorf("%w: provider plugin %s returned no files: podsecrets writes a volume's files itself, atomically and only on tmpfs, "+
			"so a plugin must return them instead of writing into target_path (for the AWS plugin, set --driver-writes-secrets=true)",
			provider.ErrInvalid, name)
	}
	out := &provider.Response{Files: make([]provider.File, 0, len(resp.GetFiles()))}
	for i, f := range resp.GetFiles() {
		mode := f.GetMode()
		if mode < 0 || fs.FileMode(mode)&^fs.ModePerm != 0 {
			return nil, fmt.Errorf("%w: provider plugin %s: files[%d] (%s): mode %#o has more than permission bits", provider.ErrInvalid, name, i, quote(f.GetPath()), mode)
		}
		if mode == 0 {
			// Told the default mode and set none: it gets that mode,
			// not an unreadable file.
			mode = defaultMode
		}
		out.Files = append(out.Files, provider.File{Path: f.GetPath(), Mode: fs.FileMode(mode), Data: f.GetContents()})
	}
	for i, v := range resp.GetObjectVersion() {
		for _, f := range [...]struct{ name, value string }{{"id", v.GetId()}, {"version", v.GetVersion()}} {
			if err := printable(f.value); err != nil {
				return nil, fmt.Errorf("%w: provider plugin %s: object_version[%d].%s %v", provider.ErrInvalid, name, i, f.name, err)
			}
		}
		if v.GetId() == "" {
			return nil, fmt.Errorf("%w: provider plugin %s: object_version[%d].id is empty", provider.ErrInvalid, name, i)
		}
		out.Versions = append(out.Versions, provider.ObjectVersion{ID: v.GetId(), Version: v.GetVersion(), Source: "plugin:" + name})
	}
	return out, nil
}

// printable refuses what would garble an audit line or an event.
func printable(s string) error {
	if len(s) > maxVersionLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxVersionLen)
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return errors.New("holds an unprintable character")
	}
	return nil
}

// quote renders a plugin's file path for a message, bounded.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return strconv.Quote(s)
}

// callError maps a failed Mount call onto the provider error kinds. The
// request's own end is reported as such; the plugin's status code picks
// the kind otherwise, and its message is passed on redacted.
func (p *Plugin) callError(ctx context.Context, req *provider.Request, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("provider plugin %s: %w", p.name, ctx.Err())
	}
	st := status.Convert(err)
	msg := redact(st.Message(), req)
	var kind error
	switch st.Code() {
	case codes.NotFound:
		kind = provider.ErrNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		kind = provider.ErrPermissionDenied
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.AlreadyExists:
		kind = provider.ErrInvalid
	case codes.Unimplemented:
		return fmt.Errorf("%w: provider plugin %s does not serve v1alpha1.CSIDriverProvider/Mount (%s)", provider.ErrInvalid, p.name, msg)
	case codes.ResourceExhausted:
		if strings.Contains(st.Message(), "larger than max") {
			return fmt.Errorf("%w: provider plugin %s answered with more than a volume can hold (%s)", provider.ErrInvalid, p.name, msg)
		}
		kind = provider.ErrUnavailable
	default:
		// Unavailable (not running, crashed mid-call), Internal,
		// Unknown, a deadline of the plugin's own: a retry may do.
		kind = provider.ErrUnavailable
	}
	return fmt.Errorf("%w: provider plugin %s: %s: %s", kind, p.name, st.Code(), msg)
}

// maxMessage bounds what of a plugin's message reaches an event.
const maxMessage = 512

// jwtLike matches what looks like a JSON Web Token, which a plugin may quote
// from a store's answer even when it is not one of the request's tokens.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)

// redact keeps the request's tokens, node-publish secrets and target path
// out of a plugin's message, and its control characters: the message goes
// into events, which kubelet merges only when they repeat exactly.
func redact(msg string, req *provider.Request) string {
	var pairs []string
	for _, t := range req.Pod.Tokens {
		if t.Value != "" {
			pairs = append(pairs, t.Value, "[redacted token]")
		}
	}
	for _, v := range req.Secrets {
		if len(v) >= 4 {
			pairs = append(pairs, v, "[redacted secret]")
		}
	}
	if req.Target != "" {
		pairs = append(pairs, req.Target, "<target>")
	}
	if len(pairs) > 0 {
		msg = strings.NewReplacer(pairs...).Replace(msg)
	}
	msg = jwtLike.ReplaceAllString(msg, "[redacted token]")
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "..."
	}
	return msg
}
