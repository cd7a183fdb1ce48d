// Package pluginfake is a conformance plugin: a small v1alpha1
// CSIDriverProvider server whose answers a class scripts through its
// parameters, so that tests drive every answer a real plugin can give
// (files, versions, errors, slow answers, a crash mid-call, a huge answer)
// through the real driver. The objects it serves come from one seed
// document: Seed in process, a file re-read at every call out of process
// (cmd/pluginfake).
//
// Class parameters it reads:
//
//	objects  comma-separated "id" or "id=path": the seeded objects to
//	         return, each as a file (default path: the id)
//	answer   "" (files), "nofiles" (versions only, as a plugin that
//	         writes into target_path itself answers; "nofiles:write" also
//	         writes the files there, as such a plugin does), "code:X" (the
//	         answer's error code X), "grpc:Code:message" (a gRPC error;
//	         "$token" in the message becomes the request's first token,
//	         "$target" its target), "slow" (no answer until the call
//	         ends), "crash" (Options.Crash mid-call), "huge:N" (one file of
//	         N bytes)
//	echo     "true" adds a file "request.json" describing the request,
//	         tokens as their audiences only
package pluginfake

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/plugin/v1alpha1"
)

// Seed is the content of the fake store.
type Seed struct {
	Objects map[string]Object `json:"objects"`
}

// Object is one object of the store.
type Object struct {
	Version  string `json:"version"`
	Contents string `json:"contents"`
	// Mode is the file mode answered; 0 answers none.
	Mode int32 `json:"mode,omitempty"`
}

// Echo is the content of the "request.json" file: what the plugin was
// sent, without the token values.
type Echo struct {
	Attributes      map[string]string `json:"attributes"`
	TokenAudiences  []string          `json:"tokenAudiences"`
	SecretKeys      []string          `json:"secretKeys"`
	TargetPath      string            `json:"targetPath"`
	Permission      string            `json:"permission"`
	CurrentVersions map[string]string `json:"currentVersions"`
}

// Server is the conformance plugin.
type Server struct {
	v1alpha1.UnimplementedCSIDriverProviderServer

	// Load, when set, is called at every Mount for the current seed (the
	// binary re-reads its file); otherwise the last Seed call's holds.
	Load func() (Seed, error)
	// Crash is what answer "crash" does mid-call; the binary exits.
	Crash func()

	mu    sync.Mutex
	seed  Seed
	calls []*v1alpha1.MountRequest
}

// SeedWith replaces the store's content.
func (s *Server) SeedWith(seed Seed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seed = seed
}

// Calls returns the Mount requests served so far, in order.
func (s *Server) Calls() []*v1alpha1.MountRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*v1alpha1.MountRequest(nil), s.calls...)
}

// Version implements v1alpha1.CSIDriverProviderServer.
func (s *Server) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: "pluginfake", RuntimeVersion: "0"}, nil
}

// Mount implements v1alpha1.CSIDriverProviderServer.
func (s *Server) Mount(ctx context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	s.mu.Lock()
	s.calls = append(s.calls, req)
	seed := s.seed
	s.mu.Unlock()
	if s.Load != nil {
		var err error
		if seed, err = s.Load(); err != nil {
			return nil, status.Errorf(codes.Internal, "load seed: %v", err)
		}
	}
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.GetAttributes()), &attrs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "attributes: %v", err)
	}
	answer := attrs["answer"]
	verb, arg, _ := strings.Cut(answer, ":")
	switch verb {
	case "code":
		return &v1alpha1.MountResponse{Error: &v1alpha1.Error{Code: arg}}, nil
	case "grpc":
		name, msg, _ := strings.Cut(arg, ":")
		code, ok := codeNamed(name)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "answer %q: unknown code", answer)
		}
		msg = strings.ReplaceAll(msg, "$token", firstToken(attrs))
		msg = strings.ReplaceAll(msg, "$target", req.GetTargetPath())
		return nil, status.Error(code, msg)
	case "slow":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	case "crash":
		if s.Crash != nil {
			s.Crash()
		}
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	resp := &v1alpha1.MountResponse{}
	for _, spec := range strings.Split(attrs["objects"], ",") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		id, path, ok := strings.Cut(spec, "=")
		if !ok {
			path = id
		}
		o, ok := seed.Objects[id]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "object %s not found", id)
		}
		resp.ObjectVersion = append(resp.ObjectVersion, &v1alpha1.ObjectVersion{Id: id, Version: o.Version})
		resp.Files = append(resp.Files, &v1alpha1.File{Path: path, Mode: o.Mode, Contents: []byte(o.Contents)})
	}
	switch verb {
	case "nofiles":
		if arg == "write" {
			// What a plugin told to write files itself does.
			if err := writeInto(req.GetTargetPath(), resp.Files); err != nil {
				return nil, status.Errorf(codes.Internal, "write into the target: %v", err)
			}
		}
		resp.Files = nil
	case "huge":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "answer %q: want huge:N", answer)
		}
		resp.Files = append(resp.Files, &v1alpha1.File{Path: "huge", Mode: 0o644, Contents: make([]byte, n)})
	case "":
	default:
		return nil, status.Errorf(codes.InvalidArgument, "answer %q: unknown", answer)
	}
	if attrs["echo"] == "true" {
		b, err := json.MarshalIndent(echo(req, attrs), "", "  ")
		if err != nil {
			return nil, status.Errorf(codes.Internal, "echo: %v", err)
		}
		resp.Files = append(resp.Files, &v1alpha1.File{Path: "request.json", Mode: 0o644, Contents: b})
	}
	return resp, nil
}

// writeInto writes files below dir, creating it.
func writeInto(dir string, files []*v1alpha1.File) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.Clean("/"+f.GetPath()))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.GetContents(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// codeNamed is the gRPC code whose String is name, such as "NotFound".
func codeNamed(name string) (codes.Code, bool) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}

const keyTokens = provider.TokensKey

func tokens(attrs map[string]string) map[string]struct {
	Token string `json:"token"`
} {
	var m map[string]struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal([]byte(attrs[keyTokens]), &m)
	return m
}

func firstToken(attrs map[string]string) string {
	m := tokens(attrs)
	auds := make([]string, 0, len(m))
	for a := range m {
		auds = append(auds, a)
	}
	sort.Strings(auds)
	if len(auds) == 0 {
		return ""
	}
	return m[auds[0]].Token
}

func echo(req *v1alpha1.MountRequest, attrs map[string]string) Echo {
	e := Echo{Attributes: map[string]string{}, TokenAudiences: []string{}, SecretKeys: []string{},
		TargetPath: req.GetTargetPath(), Permission: req.GetPermission(), CurrentVersions: map[string]string{}}
	for k, v := range attrs {
		if k != keyTokens {
			e.Attributes[k] = v
		}
	}
	for a := range tokens(attrs) {
		e.TokenAudiences = append(e.TokenAudiences, a)
	}
	sort.Strings(e.TokenAudiences)
	var secrets map[string]string
	_ = json.Unmarshal([]byte(req.GetSecrets()), &secrets)
	for k := range secrets {
		e.SecretKeys = append(e.SecretKeys, k)
	}
	sort.Strings(e.SecretKeys)
	for _, v := range req.GetCurrentObjectVersion() {
		e.CurrentVersions[v.GetId()] = v.GetVersion()
	}
	return e
}
