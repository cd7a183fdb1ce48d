package main

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	tests := map[string]struct {
		args    []string
		env     map[string]string
		check   func(*config) bool
		wantErr string
	}{
		"node from env": {
			env: map[string]string{"NODE_NAME": "n1"},
			check: func(c *config) bool {
				return c.nodeID == "n1" && c.logLevel == "info" && c.kubeletRoot == "/var/lib/kubelet"
			},
		},
		"log level and agent from env": {
			env:   map[string]string{"NODE_NAME": "n1", "PODSECRETS_LOG_LEVEL": "debug", "PODSECRETS_POD_IDENTITY_ENDPOINT": "http://agent/v1/credentials"},
			check: func(c *config) bool { return c.logLevel == "debug" && c.podIdentity == "http://agent/v1/credentials" },
		},
		"flag beats env": {
			args:  []string{"-log-level=warn", "-region=eu-west-1"},
			env:   map[string]string{"NODE_NAME": "n1", "PODSECRETS_LOG_LEVEL": "debug", "AWS_REGION": "us-east-1"},
			check: func(c *config) bool { return c.logLevel == "warn" && c.region == "eu-west-1" },
		},
		"no node":      {wantErr: "-node-id"},
		"stray args":   {args: []string{"-node-id=n", "extra"}, wantErr: "unexpected arguments"},
		"unknown flag": {args: []string{"-node-id=n", "-nope"}, wantErr: "not defined"},
		"startup taint": {
			args:  []string{"-node-id=n", "-startup-taint=podsecrets.dev/agent-not-ready"},
			check: func(c *config) bool { return c.startupTaint == "podsecrets.dev/agent-not-ready" },
		},
		"no startup taint by default": {
			args:  []string{"-node-id=n"},
			check: func(c *config) bool { return c.startupTaint == "" },
		},
		"startup taint with an effect": {
			args:    []string{"-node-id=n", "-startup-taint=podsecrets.dev/agent-not-ready:NoSchedule"},
			wantErr: "-startup-taint",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, k := range []string{"NODE_NAME", "PODSECRETS_LOG_LEVEL", "PODSECRETS_POD_IDENTITY_ENDPOINT", "AWS_REGION"} {
				t.Setenv(k, tc.env[k])
			}
			c, err := parseFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%q) = %v, want error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("parseFlags(%q) = %+v, %v", tc.args, c, err)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	for _, bad := range [][2]string{{"xml", "info"}, {"json", "loud"}} {
		if _, err := newLogger(bad[0], bad[1]); err == nil {
			t.Errorf("newLogger(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if _, err := newLogger("json", "debug"); err != nil {
		t.Fatal(err)
	}
}
