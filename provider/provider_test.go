package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTokenNeverFormats(t *testing.T) {
	tok := Token{Value: "TOKEN-CANARY"}
	pod := Pod{Name: "p", Tokens: map[string]Token{"aud": tok}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", tok, "pod", pod)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", tok)
	out := map[string]string{
		"%v":   fmt.Sprintf("%v", tok),
		"%+v":  fmt.Sprintf("%+v", pod),
		"%#v":  fmt.Sprintf("%#v", pod),
		"%s":   fmt.Sprintf("%s", tok),
		"slog": logs.String(),
	}
	for verb, s := range out {
		if strings.Contains(s, "CANARY") {
			t.Errorf("%s shows the token: %s", verb, s)
		}
	}
	f := File{Path: "p", Mode: 0o600, Data: []byte("SECRET-CANARY")}
	for _, s := range []string{fmt.Sprintf("%v", f), fmt.Sprintf("%+v", f), fmt.Sprintf("%#v", []File{f})} {
		if strings.Contains(s, "CANARY") {
			t.Errorf("file formatting shows its data: %s", s)
		}
	}
}

func TestSecretsNeverFormat(t *testing.T) {
	req := Request{Secrets: Secrets{"password": "SECRET-CANARY"}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "req", req, "secrets", req.Secrets)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "secrets", req.Secrets)
	js, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{
		"%v":   fmt.Sprintf("%v", req.Secrets),
		"%+v":  fmt.Sprintf("%+v", req),
		"%#v":  fmt.Sprintf("%#v", req),
		"json": string(js),
		"slog": logs.String(),
	}
	for verb, s := range out {
		if strings.Contains(s, "CANARY") {
			t.Errorf("%s shows a secret: %s", verb, s)
		}
	}
	if s := req.Secrets.String(); !strings.Contains(s, "password") {
		t.Errorf("String() = %q, want the names kept", s)
	}
}

type named string

func (n named) Name() string { return string(n) }
func (named) Fetch(context.Context, *Request) (*Response, error) {
	return nil, nil
}

func TestRegistry(t *testing.T) {
	r := NewRegistry(named("b"), named("a"))
	if p, err := r.Get("a"); err != nil || p.Name() != "a" {
		t.Fatalf("Get(a) = %v, %v", p, err)
	}
	_, err := r.Get("vault")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"vault"`) || !strings.Contains(err.Error(), "known: a, b") {
		t.Fatalf("Get(vault) = %v; want ErrInvalid naming it and listing a, b", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate provider names did not panic")
		}
	}()
	NewRegistry(named("a"), named("a"))
}
