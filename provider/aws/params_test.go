package aws

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
)

func TestParseParameters(t *testing.T) {
	type wantObj struct {
		typ      objectType
		name     string
		version  string
		label    string
		path     string
		mode     fs.FileMode
		jmes     []string // paths of the jmesPath files
		failover *ref
		optional bool
	}
	tests := map[string]struct {
		params      map[string]string
		want        []wantObj
		region      string
		failover    string
		podIdentity bool
		ipv6        bool
		ignored     []string
	}{
		"minimal secret": {
			params: map[string]string{"objects": "- objectName: db\n  objectType: secretsmanager\n"},
			want:   []wantObj{{typ: typeSecretsManager, name: "db", path: "db", mode: 0o644}},
		},
		"alias, permission, version and label": {
			params: map[string]string{"objects": `
- objectName: db
  objectType: secretsmanager
  objectAlias: creds.json
  filePermission: "0600"
  objectVersion: v-1
  objectVersionLabel: AWSPENDING
`},
			want: []wantObj{{typ: typeSecretsManager, name: "db", version: "v-1", label: "AWSPENDING", path: "creds.json", mode: 0o600}},
		},
		"ARN implies the type": {
			params: map[string]string{"objects": `
- objectName: "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf"
  objectAlias: db
- objectName: "arn:aws:ssm:us-east-1:111122223333:parameter/app/url"
  objectAlias: url
`},
			want: []wantObj{
				{typ: typeSecretsManager, name: "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf", path: "db", mode: 0o644},
				{typ: typeSSMParameter, name: "arn:aws:ssm:us-east-1:111122223333:parameter/app/url", path: "url", mode: 0o644},
			},
		},
		"default alias is the translated name": {
			params: map[string]string{"objects": "- objectName: /app/db/password\n  objectType: ssmparameter\n"},
			want:   []wantObj{{typ: typeSSMParameter, name: "/app/db/password", path: "_app_db_password", mode: 0o644}},
		},
		"custom translation character applies to aliases too": {
			params: map[string]string{"pathTranslation": "-", "objects": "- objectName: a/b\n  objectType: secretsmanager\n  objectAlias: x/y\n"},
			want:   []wantObj{{typ: typeSecretsManager, name: "a/b", path: "x-y", mode: 0o644}},
		},
		"translation False makes subdirectories": {
			params: map[string]string{"pathTranslation": "False", "objects": "- objectName: app/db\n  objectType: secretsmanager\n"},
			want:   []wantObj{{typ: typeSecretsManager, name: "app/db", path: "app/db", mode: 0o644}},
		},
		"dots inside names and below the top level are fine": {
			params: map[string]string{"pathTranslation": "False", "objects": `
- {objectName: db, objectType: secretsmanager, objectAlias: .env}
- {objectName: db2, objectType: secretsmanager, objectAlias: a..b}
- {objectName: db3, objectType: secretsmanager, objectAlias: dir/..data}
`},
			want: []wantObj{
				{typ: typeSecretsManager, name: "db", path: ".env", mode: 0o644},
				{typ: typeSecretsManager, name: "db2", path: "a..b", mode: 0o644},
				{typ: typeSecretsManager, name: "db3", path: "dir/..data", mode: 0o644},
			},
		},
		"ssm version as a YAML number": {
			params: map[string]string{"objects": "- objectName: url\n  objectType: ssmparameter\n  objectVersion: 3\n"},
			want:   []wantObj{{typ: typeSSMParameter, name: "url", version: "3", path: "url", mode: 0o644}},
		},
		"AWSCURRENT and AWSPREVIOUS side by side": {
			params: map[string]string{"objects": `
- objectName: jwt
  objectType: secretsmanager
  objectAlias: current
- objectName: jwt
  objectType: secretsmanager
  objectVersionLabel: AWSPREVIOUS
  objectAlias: previous
`},
			want: []wantObj{
				{typ: typeSecretsManager, name: "jwt", path: "current", mode: 0o644},
				{typ: typeSecretsManager, name: "jwt", label: "AWSPREVIOUS", path: "previous", mode: 0o644},
			},
		},
		"jmesPath": {
			params: map[string]string{"objects": `
- objectName: db
  objectType: secretsmanager
  jmesPath:
    - path: username
      objectAlias: user
    - path: password
      objectAlias: pass
      filePermission: "0400"
`},
			want: []wantObj{{typ: typeSecretsManager, name: "db", path: "db", mode: 0o644, jmes: []string{"user", "pass"}}},
		},
		"failover object": {
			params: map[string]string{"region": "us-east-1", "failoverRegion": "us-west-2", "objects": `
- objectName: db
  objectType: secretsmanager
  objectAlias: db
  failoverObject:
    objectName: db-replica
    objectVersionLabel: AWSPREVIOUS
`},
			region: "us-east-1", failover: "us-west-2",
			want: []wantObj{{typ: typeSecretsManager, name: "db", path: "db", mode: 0o644, failover: &ref{Name: "db-replica", Label: "AWSPREVIOUS"}}},
		},
		"optional, as a boolean or a string": {
			params: map[string]string{"objects": `
- {objectName: a, objectType: secretsmanager, optional: true}
- {objectName: b, objectType: ssmparameter, optional: "True"}
- {objectName: c, objectType: secretsmanager, optional: false}
- {objectName: d, objectType: secretsmanager, Optional: yes}
- {objectName: e, objectType: secretsmanager, optional: null}
`},
			want: []wantObj{
				{typ: typeSecretsManager, name: "a", path: "a", mode: 0o644, optional: true},
				{typ: typeSSMParameter, name: "b", path: "b", mode: 0o644, optional: true},
				{typ: typeSecretsManager, name: "c", path: "c", mode: 0o644},
				{typ: typeSecretsManager, name: "d", path: "d", mode: 0o644, optional: true},
				{typ: typeSecretsManager, name: "e", path: "e", mode: 0o644},
			},
		},
		"pod identity over IPv6": {
			params:      map[string]string{"usePodIdentity": "true", "preferredAddressType": "ipv6", "objects": "- {objectName: db, objectType: secretsmanager}"},
			podIdentity: true, ipv6: true,
			want: []wantObj{{typ: typeSecretsManager, name: "db", path: "db", mode: 0o644}},
		},
		"a secret called NaN, quoted": {
			params: map[string]string{"objects": "- {objectName: 'NaN', objectType: secretsmanager, objectAlias: '+Inf'}"},
			want:   []wantObj{{typ: typeSecretsManager, name: "NaN", path: "+Inf", mode: 0o644}},
		},
		"usePodIdentity false": {
			params: map[string]string{"usePodIdentity": "false", "objects": "- {objectName: db, objectType: secretsmanager}"},
			want:   []wantObj{{typ: typeSecretsManager, name: "db", path: "db", mode: 0o644}},
		},
		"keys the Secrets Store CSI Driver adds are ignored silently, others are reported": {
			params: map[string]string{
				"objects":                                "- {objectName: db, objectType: secretsmanager, objectTemplat: x}",
				"csi.storage.k8s.io/pod.name":            "web-0",
				"csi.storage.k8s.io/serviceAccount.name": "web",
				"secretProviderClass":                    "app/db",
				"somethingElse":                          "1",
			},
			want:    []wantObj{{typ: typeSecretsManager, name: "db", path: "db", mode: 0o644}},
			ignored: []string{"somethingElse", "objects[0].objectTemplat"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseParameters(tc.params)
			if err != nil {
				t.Fatalf("parseParameters: %v", err)
			}
			if cfg.Region != tc.region || cfg.FailoverRegion != tc.failover || cfg.PodIdentity != tc.podIdentity || cfg.IPv6Agent != tc.ipv6 {
				t.Errorf("got region %q failover %q podIdentity %v ipv6 %v", cfg.Region, cfg.FailoverRegion, cfg.PodIdentity, cfg.IPv6Agent)
			}
			if !slices.Equal(cfg.Ignored, tc.ignored) {
				t.Errorf("Ignored = %q, want %q", cfg.Ignored, tc.ignored)
			}
			if len(cfg.Objects) != len(tc.want) {
				t.Fatalf("got %d objects, want %d", len(cfg.Objects), len(tc.want))
			}
			for i, w := range tc.want {
				o := cfg.Objects[i]
				var jm []string
				for _, e := range o.JMES {
					jm = append(jm, e.Path)
				}
				if o.Index != i || o.Type != w.typ || o.Name != w.name || o.Version != w.version || o.Label != w.label ||
					o.Path != w.path || o.Mode != w.mode || !slices.Equal(jm, w.jmes) || o.Optional != w.optional {
					t.Errorf("objects[%d] = %+v (jmes files %q), want %+v", i, o, jm, w)
				}
				if (o.Failover == nil) != (w.failover == nil) || (o.Failover != nil && *o.Failover != *w.failover) {
					t.Errorf("objects[%d].Failover = %+v, want %+v", i, o.Failover, w.failover)
				}
			}
		})
	}
}

func TestParseParametersJMESMode(t *testing.T) {
	cfg, err := parseParameters(map[string]string{"objects": `
- objectName: db
  objectType: secretsmanager
  jmesPath:
    - {path: a, objectAlias: a, filePermission: "0400"}
    - {path: b, objectAlias: b}
`})
	if err != nil {
		t.Fatal(err)
	}
	if got := []fs.FileMode{cfg.Objects[0].JMES[0].Mode, cfg.Objects[0].JMES[1].Mode}; got[0] != 0o400 || got[1] != 0o644 {
		t.Errorf("jmesPath modes = %v, want [0400 0644]", got)
	}
}

func TestParseParametersErrors(t *testing.T) {
	sm := func(extra string) map[string]string {
		return map[string]string{"objects": "- objectName: db\n  objectType: secretsmanager\n" + extra}
	}
	tests := map[string]struct {
		params map[string]string
		want   string // substring of the message; exact when exact is set
		exact  bool
	}{
		"no objects":     {params: map[string]string{"region": "us-east-1"}, want: "objects: required"},
		"empty objects":  {params: map[string]string{"objects": "  "}, want: "objects: required"},
		"empty list":     {params: map[string]string{"objects": "[]"}, want: "objects: the list is empty"},
		"not a list":     {params: map[string]string{"objects": "objectName: db"}, want: "objects: want a YAML list"},
		"not YAML":       {params: map[string]string{"objects": "- [unclosed"}, want: "objects: want a YAML list"},
		"null entry":     {params: map[string]string{"objects": "- \n"}, want: "objects[0]: want an object"},
		"no objectName":  {params: map[string]string{"objects": "- objectType: secretsmanager"}, want: "objects[0]: objectName: required"},
		"no objectType":  {params: map[string]string{"objects": "- objectName: db"}, want: `objects[0] (objectName "db"): objectType: required unless objectName is an ARN`},
		"bad objectType": {params: map[string]string{"objects": "- {objectName: db, objectType: vault}"}, want: `objects[0] (objectName "db"): objectType "vault": want "secretsmanager" or "ssmparameter"`},
		"ARN of another service": {
			params: map[string]string{"objects": "- objectName: arn:aws:s3:::bucket/key"},
			want:   `objectName is an ARN of service "s3"`,
		},
		"type contradicts ARN": {
			params: map[string]string{"objects": "- {objectName: 'arn:aws:ssm:us-east-1:111122223333:parameter/x', objectType: secretsmanager}"},
			want:   `objectType "secretsmanager" does not match the ARN's service "ssm"`,
		},
		"filePermission exact message": {
			params: map[string]string{"objects": `
- {objectName: a, objectType: secretsmanager}
- {objectName: b, objectType: secretsmanager}
- {objectName: db, objectType: secretsmanager, filePermission: "999"}
`},
			want:  `objects[2] (objectName "db"): filePermission "999": want a 4-digit octal mode like "0600"`,
			exact: true,
		},
		"filePermission not octal":   {params: sm(`  filePermission: "0680"`), want: `filePermission "0680": want a 4-digit octal mode`},
		"filePermission setuid":      {params: sm(`  filePermission: "4755"`), want: `filePermission "4755": setuid`},
		"filePermission unquoted":    {params: sm(`  filePermission: 0600`), want: "is a YAML number"},
		"filePermission three-digit": {params: sm(`  filePermission: "644"`), want: `filePermission "644": want a 4-digit`},
		"duplicate file names": {
			params: map[string]string{"objects": "- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: ssmparameter, objectAlias: x}"},
			want:   `objects[1] (objectName "b"): file name "x" is also used by objects[0] (objectName "a")`,
		},
		"duplicate after translation": {
			params: map[string]string{"objects": "- {objectName: a/b, objectType: secretsmanager}\n- {objectName: a_b, objectType: secretsmanager}"},
			want:   `file name "a_b" is also used by objects[0] (objectName "a/b")`,
		},
		"jmesPath alias collides with an object": {
			params: map[string]string{"objects": "- {objectName: user, objectType: secretsmanager}\n- objectName: db\n  objectType: secretsmanager\n  jmesPath: [{path: username, objectAlias: user}]"},
			want:   `objects[1] (objectName "db") jmesPath[0]: file name "user" is also used by objects[0] (objectName "user")`,
		},
		"file and directory": {
			params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: a, objectType: secretsmanager}\n- {objectName: a/b, objectType: secretsmanager}"},
			want:   `file name "a/b" needs directory "a", which is objects[0] (objectName "a")'s file`,
		},
		"directory and file": {
			params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: a/b, objectType: secretsmanager}\n- {objectName: a, objectType: secretsmanager}"},
			want:   `file name "a" is a directory of objects[0] (objectName "a/b")'s file`,
		},
		"absolute without translation": {
			params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: /app/db, objectType: ssmparameter}"},
			want:   `objects[0] (objectName "/app/db"): objectName "/app/db": file name "/app/db" is absolute (pathTranslation is off); set objectAlias or pathTranslation`,
			exact:  true,
		},
		"absolute alias without translation": {
			params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: ssmparameter, objectAlias: /x}"},
			want:   `objects[0] (objectName "db"): objectAlias "/x": file name "/x" is absolute (pathTranslation is off); set objectAlias or pathTranslation`,
			exact:  true,
		},
		"dot-dot alias":                {params: sm("  objectAlias: ..\n"), want: `objects[0] (objectName "db"): objectAlias "..": file name ".." has a ".." element`, exact: true},
		"dot alias":                    {params: sm("  objectAlias: .\n"), want: `objects[0] (objectName "db"): objectAlias ".": file name "." has a "." element`, exact: true},
		"dot-dot element untranslated": {params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: a/../../b}"}, want: `objects[0] (objectName "db"): objectAlias "a/../../b": file name "a/../../b" has a ".." element`, exact: true},
		"parent untranslated":          {params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: ../x}"}, want: `objects[0] (objectName "db"): objectAlias "../x": file name "../x" has a ".." element`, exact: true},
		"parent translated": {
			params: sm("  objectAlias: ../x\n"),
			want:   `objects[0] (objectName "db"): objectAlias "../x": file name ".._x" starts with "..", reserved for the volume's "..data" layout`,
			exact:  true,
		},
		"parent translated from objectName": {
			params: map[string]string{"objects": "- {objectName: a, objectType: secretsmanager}\n- {objectName: ../../etc/passwd, objectType: secretsmanager}"},
			want:   `objects[1] (objectName "../../etc/passwd"): objectName "../../etc/passwd": file name ".._.._etc_passwd" starts with "..", reserved for the volume's "..data" layout`,
			exact:  true,
		},
		"reserved alias ..data": {
			params: sm("  objectAlias: ..data\n"),
			want:   `objects[0] (objectName "db"): objectAlias "..data": file name "..data" starts with "..", reserved for the volume's "..data" layout`,
			exact:  true,
		},
		"reserved alias ..x":           {params: sm("  objectAlias: ..x\n"), want: `objects[0] (objectName "db"): objectAlias "..x": file name "..x" starts with ".."`},
		"reserved alias ..data_tmp":    {params: sm("  objectAlias: ..data_tmp\n"), want: `objects[0] (objectName "db"): objectAlias "..data_tmp": file name "..data_tmp" starts with ".."`},
		"reserved version directory":   {params: sm("  objectAlias: ..2026_01_02_03_04_05.1\n"), want: `objectAlias "..2026_01_02_03_04_05.1": file name "..2026_01_02_03_04_05.1" starts with ".."`},
		"reserved objectName":          {params: map[string]string{"objects": "- {objectName: ..data, objectType: ssmparameter}"}, want: `objects[0] (objectName "..data"): objectName "..data": file name "..data" starts with ".."`},
		"reserved directory":           {params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: ..data/x}"}, want: `objectAlias "..data/x": file name "..data/x" starts with ".."`},
		"empty element untranslated":   {params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: a//b}"}, want: `objects[0] (objectName "db"): objectAlias "a//b": file name "a//b" has an empty element`, exact: true},
		"trailing slash untranslated":  {params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: a/}"}, want: `file name "a/" has an empty element`},
		"control character in alias":   {params: sm("  objectAlias: \"a\\nb\"\n"), want: `objects[0] (objectName "db"): objectAlias "a\nb": file name "a\nb" contains a control character`, exact: true},
		"tab in alias":                 {params: sm("  objectAlias: \"a\\tb\"\n"), want: `objectAlias "a\tb": file name "a\tb" contains a control character`},
		"DEL in alias":                 {params: sm("  objectAlias: \"a\\x7Fb\"\n"), want: `objectAlias "a\x7fb": file name "a\x7fb" contains a control character`},
		"NUL in alias":                 {params: sm("  objectAlias: \"a\\0b\"\n"), want: `objectAlias "a\x00b": file name "a\x00b" contains a NUL byte`},
		"control character translated": {params: withKV(sm("  objectAlias: \"a/\\x1Fb\"\n"), "pathTranslation", "-"), want: `objectAlias "a/\x1fb": file name "a-\x1fb" contains a control character`},
		"long name needs an alias":     {params: sm("  objectAlias: " + strings.Repeat("x", 300) + "\n"), want: `file name "` + strings.Repeat("x", 64) + `"... has an element longer than 255 bytes; set objectAlias`},
		"path too long": {
			params: map[string]string{"pathTranslation": "False", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: " + strings.Repeat("x/", 2048) + "x}"},
			want:   `objects[0] (objectName "db"): objectAlias "` + strings.Repeat("x/", 32) + `"...: file name "` + strings.Repeat("x/", 32) + `"... is longer than 4096 bytes`,
			exact:  true,
		},
		"jmesPath reserved alias": {
			params: sm("  jmesPath: [{path: a, objectAlias: ..data}]\n"),
			want:   `objects[0] (objectName "db") jmesPath[0]: objectAlias "..data": file name "..data" starts with "..", reserved for the volume's "..data" layout`,
			exact:  true,
		},
		"jmesPath parent alias": {
			params: sm("  jmesPath: [{path: a, objectAlias: ok}, {path: b, objectAlias: ../x}]\n"),
			want:   `objects[0] (objectName "db") jmesPath[1]: objectAlias "../x": file name ".._x" starts with ".."`,
		},
		"jmesPath control character": {
			params: sm("  jmesPath: [{path: a, objectAlias: \"x\\ry\"}]\n"),
			want:   `objects[0] (objectName "db") jmesPath[0]: objectAlias "x\ry": file name "x\ry" contains a control character`,
			exact:  true,
		},
		"ssm version and label":         {params: map[string]string{"objects": "- {objectName: url, objectType: ssmparameter, objectVersion: '2', objectVersionLabel: prod}"}, want: `objects[0] (objectName "url"): objectVersion "2" and objectVersionLabel "prod": SSM parameters take one of them, not both`},
		"ssm version not a number":      {params: map[string]string{"objects": "- {objectName: url, objectType: ssmparameter, objectVersion: abc}"}, want: `objectVersion "abc": SSM parameter versions are positive integers`},
		"ssm label starting with digit": {params: map[string]string{"objects": "- {objectName: url, objectType: ssmparameter, objectVersionLabel: 1a}"}, want: `objectVersionLabel "1a": not an SSM parameter label`},
		"ssm name with selector":        {params: map[string]string{"objects": "- {objectName: 'url:3', objectType: ssmparameter}"}, want: `SSM parameter names can't contain ':'`},
		"region not a code":             {params: withKV(sm(""), "region", "evil.example/x"), want: `region "evil.example/x": not a region code`},
		"failoverRegion equals region":  {params: withKV(sm(""), "region", "us-east-1", "failoverRegion", "us-east-1"), want: `failoverRegion "us-east-1": must differ from region`},
		"failoverObject without failoverRegion": {
			params: sm("  objectAlias: db\n  failoverObject: {objectName: db2}\n"),
			want:   `objects[0] (objectName "db"): failoverObject is set but failoverRegion is not`,
		},
		"failoverObject without objectName": {
			params: withKV(sm("  objectAlias: db\n  failoverObject: {objectVersionLabel: AWSCURRENT}\n"), "failoverRegion", "us-west-2"),
			want:   `failoverObject.objectName: required`,
		},
		"failoverObject without alias": {
			params: withKV(sm("  failoverObject: {objectName: db2}\n"), "failoverRegion", "us-west-2"),
			want:   `objectAlias: required when failoverObject is set`,
		},
		"failoverObject of another service": {
			params: withKV(sm("  objectAlias: db\n  failoverObject: {objectName: 'arn:aws:ssm:us-west-2:111122223333:parameter/x'}\n"), "failoverRegion", "us-west-2"),
			want:   `failoverObject.objectName is an ARN of service "ssm", but the object is a secretsmanager`,
		},
		"failoverObject version differs": {
			params: withKV(sm("  objectAlias: db\n  objectVersion: v1\n  failoverObject: {objectName: db, objectVersion: v2}\n"), "failoverRegion", "us-west-2"),
			want:   `failoverObject.objectVersion "v2" must match objectVersion "v1"`,
		},
		"pathTranslation two characters": {params: withKV(sm(""), "pathTranslation", "ab"), want: `pathTranslation "ab": want a single character, or "False"`},
		"pathTranslation slash":          {params: withKV(sm(""), "pathTranslation", "/"), want: `pathTranslation "/": not usable in a file name`},
		"usePodIdentity not a boolean":   {params: withKV(sm(""), "usePodIdentity", "maybe"), want: `usePodIdentity "maybe": want "true" or "false"`},
		"preferredAddressType":           {params: withKV(sm(""), "preferredAddressType", "ipv5"), want: `preferredAddressType "ipv5"`},
		"jmesPath without path":          {params: sm("  jmesPath: [{objectAlias: x}]\n"), want: `objects[0] (objectName "db") jmesPath[0]: path: required`},
		"jmesPath without alias":         {params: sm("  jmesPath: [{path: x}]\n"), want: `objects[0] (objectName "db") jmesPath[0]: objectAlias: required`},
		"jmesPath bad expression":        {params: sm("  jmesPath: [{path: 'a[', objectAlias: x}]\n"), want: `jmesPath[0]: path "a[": not a JMESPath expression`},
		"jmesPath bad permission":        {params: sm("  jmesPath: [{path: a, objectAlias: x, filePermission: '0999'}]\n"), want: `jmesPath[0]: filePermission "0999"`},
		"objectTemplate":                 {params: sm("  objectTemplate: '{{ . }}'\n"), want: "objectTemplate is not supported"},
		"optional not a boolean":         {params: sm("  optional: maybe\n"), want: `objects[0] (objectName "db"): optional "maybe": want true or false`, exact: true},
		"optional a number":              {params: sm("  optional: 1\n"), want: `objects[0] (objectName "db"): optional 1: want true or false`, exact: true},
		"optional a list":                {params: sm("  optional: [true]\n"), want: `objects[0] (objectName "db"): optional [true]: want true or false`, exact: true},
		"objectName a list": {
			params: map[string]string{"objects": "- {objectName: [a], objectType: secretsmanager}"},
			want:   "objects: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go struct field rawObject.objectName of type string",
		},
		// The YAML is parsed once for the entries and their keys (see
		// decodeObjects); its errors are still those of the two decodes
		// it replaced, in their order.
		"entry not an object": {
			params: map[string]string{"objects": "- db"},
			want:   "objects: want a YAML list of objects: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go value of type map[string]interface {}",
		},
		"the list's form is checked before its entries": {
			params: map[string]string{"objects": "[{objectName: [a], objectType: secretsmanager}, 5]"},
			want:   "objects: want a YAML list of objects: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number into Go value of type map[string]interface {}",
		},
		"YAML syntax": {params: map[string]string{"objects": "- [unclosed"}, want: "objects: want a YAML list of objects: error converting YAML to JSON: yaml: line 1: "},
		"unquoted .nan as objectName": {
			params: map[string]string{"objects": "- {objectName: .nan, objectType: secretsmanager}"},
			want:   "objects: want a YAML list of objects: error converting YAML to JSON: json: unsupported value: NaN",
		},
		"unquoted .inf as an alias, another NaN first": {
			params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager, objectAlias: -.inf, x: .nan}"},
			want:   "objects: want a YAML list of objects: error converting YAML to JSON: json: unsupported value: -Inf",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseParameters(tc.params)
			if err == nil {
				t.Fatalf("parseParameters succeeded (%+v), want error %q", cfg, tc.want)
			}
			if !errors.Is(err, provider.ErrInvalid) {
				t.Errorf("error %q does not wrap provider.ErrInvalid", err)
			}
			if tc.exact && err.Error() != tc.want {
				t.Errorf("error = %q\nwant    %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func withKV(m map[string]string, kv ...string) map[string]string {
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestCheckRegions(t *testing.T) {
	tests := map[string]struct {
		params map[string]string
		region string
		want   string // "" = ok
	}{
		"name": {params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager}"}, region: "us-east-1"},
		"ARN in region": {
			params: map[string]string{"objects": "- objectName: arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf"},
			region: "us-east-1",
		},
		"ARN of another region": {
			params: map[string]string{"objects": "- objectName: arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf"},
			region: "us-east-1",
			want:   `the ARN names region "eu-west-1", but the volume's region is "us-east-1"`,
		},
		"ARN with failover region needs a failoverObject": {
			params: map[string]string{"failoverRegion": "us-west-2", "objects": "- objectName: arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf"},
			region: "us-east-1",
			want:   `can't be used in failoverRegion "us-west-2"; set failoverObject`,
		},
		"failoverObject ARN of the wrong region": {
			params: map[string]string{"failoverRegion": "us-west-2", "objects": `
- objectName: arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf
  objectAlias: db
  failoverObject: {objectName: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf"}`},
			region: "us-east-1",
			want:   `failoverObject.objectName names region "eu-west-1", but failoverRegion is "us-west-2"`,
		},
		"failoverObject ARN in the failover region": {
			params: map[string]string{"failoverRegion": "us-west-2", "objects": `
- objectName: arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf
  objectAlias: db
  failoverObject: {objectName: "arn:aws:secretsmanager:us-west-2:111122223333:secret:db-XyZxYz"}`},
			region: "us-east-1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseParameters(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.checkRegions(tc.region)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkRegions: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, provider.ErrInvalid)):
				t.Errorf("checkRegions = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestTranslatePath(t *testing.T) {
	tests := map[string]struct {
		name string
		sep  rune
		want string
	}{
		"default":         {name: "/a/b/c", sep: '_', want: "_a_b_c"},
		"custom":          {name: "a/b", sep: '-', want: "a-b"},
		"multibyte":       {name: "a/b", sep: 'é', want: "aéb"},
		"off":             {name: "a/b", sep: 0, want: "a/b"},
		"nothing to do":   {name: "plain", sep: '_', want: "plain"},
		"slash is a noop": {name: "a/b", sep: '/', want: "a/b"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := translatePath(tc.name, tc.sep); got != tc.want {
				t.Errorf("translatePath(%q, %q) = %q, want %q", tc.name, tc.sep, got, tc.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := map[string]struct {
		in   string
		want fs.FileMode
		ok   bool
	}{
		"0600": {in: "0600", want: 0o600, ok: true},
		"0777": {in: "0777", want: 0o777, ok: true},
		"0000": {in: "0000", want: 0, ok: true},
		"0644": {in: "0644", want: 0o644, ok: true},
		"600":  {in: "600"},
		"1777": {in: "1777"},
		"0800": {in: "0800"},
		"-600": {in: "-600"},
		"+600": {in: "+600"},
		"0x1f": {in: "0x1f"},
		"":     {in: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseMode(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseMode(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseObjects(f *testing.F) {
	seeds := []struct{ objects, translation string }{
		{"- objectName: db\n  objectType: secretsmanager\n", ""},
		{"- {objectName: /app/db, objectType: ssmparameter, objectVersion: 3}", "False"},
		{"- {objectName: a/b, objectType: secretsmanager, objectAlias: '../x'}", "-"},
		{"- {objectName: a, objectType: secretsmanager, objectAlias: 'x/../../y'}", "False"},
		{"- objectName: arn:aws:secretsmanager:us-east-1:1:secret:x\n  jmesPath: [{path: 'a.b', objectAlias: ab, filePermission: '0400'}]", ""},
		{"- objectName: x\n  objectType: secretsmanager\n  objectAlias: y\n  failoverObject: {objectName: z}", ""},
		{"- {objectName: a, objectType: secretsmanager}\n- {objectName: a/b, objectType: secretsmanager}", "False"},
		{"- &a {objectName: *a}", ""},
		{"- objectName: '.'\n  objectType: ssmparameter", "False"},
		{"- {objectName: db, objectType: secretsmanager, jmesPath: [{path: '[?a==`1`].b | [0]', objectAlias: q}]}", ""},
		{"[]", ""},
		{"- {objectName: x, objectType: secretsmanager, filePermission: 0600}", ""},
		{"- {objectName: x, objectType: secretsmanager, optional: true, jmesPath: [{path: a, objectAlias: y}]}", ""},
		{"- {objectName: x, objectType: ssmparameter, optional: 'false'}\n- {objectName: y, objectType: ssmparameter, optional: {a: 1}}", ""},
	}
	for _, s := range seeds {
		f.Add(s.objects, s.translation)
	}
	f.Fuzz(func(t *testing.T, objects, translation string) {
		cfg, err := parseParameters(map[string]string{
			"objects": objects, "pathTranslation": translation, "region": "us-east-1", "failoverRegion": "us-west-2",
		})
		if err != nil {
			if !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			return
		}
		seen := map[string]bool{}
		check := func(p string, mode fs.FileMode) {
			if !filepath.IsLocal(p) || filepath.IsAbs(p) || filepath.Clean(p) != p || !utf8.ValidString(p) {
				t.Fatalf("accepted unsafe file name %q", p)
			}
			for _, el := range strings.Split(p, "/") {
				if el == ".." || el == "." || el == "" {
					t.Fatalf("accepted file name %q with element %q", p, el)
				}
			}
			if err := mount.ValidatePath(p); err != nil {
				t.Fatalf("accepted file name %q, which the mount layer refuses: %v", p, err)
			}
			if cfg.Translate != 0 && strings.Contains(p, "/") {
				t.Fatalf("translation %q left a slash in %q", cfg.Translate, p)
			}
			if seen[p] {
				t.Fatalf("accepted duplicate file name %q", p)
			}
			seen[p] = true
			if mode > 0o777 {
				t.Fatalf("accepted mode %o", mode)
			}
		}
		if len(cfg.Objects) == 0 {
			t.Fatal("accepted an empty volume")
		}
		for _, o := range cfg.Objects {
			if o.Name == "" || (o.Type != typeSecretsManager && o.Type != typeSSMParameter) {
				t.Fatalf("accepted object %+v", o)
			}
			check(o.Path, o.Mode)
			for _, e := range o.JMES {
				check(e.Path, e.Mode)
			}
		}
	})
}

func FuzzTranslatePath(f *testing.F) {
	for _, s := range []struct{ name, translation string }{
		{"/a/b", "_"}, {"a/b", "False"}, {"a//b/", "-"}, {"ünï/cödé", "é"}, {"", "_"}, {"a/b", "/"}, {"x", "ab"},
	} {
		f.Add(s.name, s.translation)
	}
	f.Fuzz(func(t *testing.T, name, translation string) {
		sep, err := parseTranslation(translation)
		if err != nil {
			if !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			return
		}
		got := translatePath(name, sep)
		if sep == 0 {
			if got != name {
				t.Fatalf("translation off changed %q to %q", name, got)
			}
			return
		}
		if strings.Contains(got, "/") {
			t.Fatalf("translatePath(%q, %q) = %q still has a slash", name, sep, got)
		}
		if want := strings.Count(name, "/") + strings.Count(name, string(sep)); strings.Count(got, string(sep)) != want {
			t.Fatalf("translatePath(%q, %q) = %q: want %d separators", name, sep, got, want)
		}
		if strings.ReplaceAll(got, string(sep), "/") != strings.ReplaceAll(name, string(sep), "/") {
			t.Fatalf("translatePath(%q, %q) = %q changed other characters", name, sep, got)
		}
		if mount.ValidatePath(got) == nil && !filepath.IsLocal(got) {
			t.Fatalf("mount.ValidatePath accepted %q, which is not local", got)
		}
	})
}

func TestUnknownKeyWarnings(t *testing.T) {
	const class = "app/db"
	w := func(msg string) provider.Warning {
		return provider.Warning{Reason: "UnknownParameterKey", Message: "SecretProviderClass app/db: " + msg}
	}
	tests := map[string]struct {
		params map[string]string
		want   []provider.Warning
	}{
		"clean class": {
			params: map[string]string{"region": "us-east-1", "objects": "- {objectName: db, objectType: secretsmanager, objectAlias: x, jmesPath: [{path: a, objectAlias: y}]}"},
		},
		"letter case of a known key": {
			params: map[string]string{"objects": "- {objectName: db, objecttype: secretsmanager, OBJECTALIAS: x}"},
		},
		"unknown top-level keys are only logged": {
			params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager}", "regoin": "us-east-1", "csi.storage.k8s.io/pod.name": "web-0"},
		},
		"typo": {
			params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager, objectAlais: x}"},
			want:   []provider.Warning{w(`objects[0].objectAlais: unknown key, ignored; did you mean "objectAlias"?`)},
		},
		"optional is known; a typo of it is not": {
			params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager, optional: true}\n- {objectName: x, objectType: secretsmanager, optinal: true}"},
			want:   []provider.Warning{w(`objects[1].optinal: unknown key, ignored; did you mean "optional"?`)},
		},
		"nothing close": {
			params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager, rotation: daily}"},
			want:   []provider.Warning{w(`objects[0].rotation: unknown key, ignored`)},
		},
		"nested entries, in order": {
			params: map[string]string{"failoverRegion": "us-west-2", "objects": `
- objectName: a
  objectType: secretsmanager
  objectAlias: a
  failoverObject: {objectName: b, objectVersionLable: AWSPREVIOUS}
- objectName: db
  objectType: secretsmanager
  zzz: 1
  filePermision: "0600"
  jmesPath:
    - {path: a, objectAlias: x}
    - {path: b, objectAlias: y, pth: c}
`},
			want: []provider.Warning{
				w(`objects[0].failoverObject.objectVersionLable: unknown key, ignored; did you mean "objectVersionLabel"?`),
				w(`objects[1].filePermision: unknown key, ignored; did you mean "filePermission"?`),
				w(`objects[1].zzz: unknown key, ignored`),
				w(`objects[1].jmesPath[1].pth: unknown key, ignored; did you mean "path"?`),
			},
		},
		"odd keys are quoted": {
			params: map[string]string{"objects": "- {objectName: db, objectType: secretsmanager, \"object Alias\": x, \"a\\nb\": y, \"" + strings.Repeat("k", 70) + "\": z}"},
			want: []provider.Warning{
				w(`objects[0]["a\nb"]: unknown key, ignored`),
				w(`objects[0]["` + strings.Repeat("k", 64) + `"...]: unknown key, ignored`),
				w(`objects[0]["object Alias"]: unknown key, ignored; did you mean "objectAlias"?`),
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseParameters(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.warnings(class); !slices.Equal(got, tc.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestUnknownKeyWarningsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("- objectName: db\n  objectType: secretsmanager\n")
	for i := range 25 {
		fmt.Fprintf(&b, "  extra%02d: x\n", i)
	}
	cfg, err := parseParameters(map[string]string{"objects": b.String()})
	if err != nil {
		t.Fatal(err)
	}
	ws := cfg.warnings("app/db")
	if len(ws) != maxKeyWarnings+1 {
		t.Fatalf("%d warnings, want %d", len(ws), maxKeyWarnings+1)
	}
	if last := ws[len(ws)-1]; last.Message != "SecretProviderClass app/db: 15 more unknown keys in objects, ignored" || last.Reason != ReasonUnknownParameterKey {
		t.Errorf("last warning = %+v", last)
	}
}

// TestFetchWarnings checks that a class with a mistyped key mounts, as with
// the incumbent provider, and says so in the response; classes sharing a
// parse each get their own name in the message.
func TestFetchWarnings(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	params := map[string]string{"objects": sm("db", "objectAlais: password")}
	req := e.request(params)
	resp, err := e.p.Fetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Files) != 1 || resp.Files[0].Path != "db" {
		t.Errorf("files = %v, want the unaliased file db", resp.Files)
	}
	want := []provider.Warning{{Reason: "UnknownParameterKey", Message: `SecretProviderClass app/test-class: objects[0].objectAlais: unknown key, ignored; did you mean "objectAlias"?`}}
	if !slices.Equal(resp.Warnings, want) {
		t.Errorf("warnings = %q, want %q", resp.Warnings, want)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "aws: ignoring unknown parameters") || !strings.Contains(logs, "objects[0].objectAlais") {
		t.Errorf("no debug line for the ignored key:\n%s", logs)
	}

	req.Class = "other/class"
	resp, err = e.p.Fetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0].Message, "SecretProviderClass other/class: ") {
		t.Errorf("warnings = %q, want them to name other/class", resp.Warnings)
	}

	resp = e.mustFetch(map[string]string{"objects": sm("db", "objectAlias: password")})
	if resp.Warnings != nil {
		t.Errorf("clean class: warnings = %q, want none", resp.Warnings)
	}
}

// TestBadFileNamesFailBeforeAnyCall checks that names the mount layer would
// refuse are refused when the class is parsed: no STS or store call.
func TestBadFileNamesFailBeforeAnyCall(t *testing.T) {
	for _, extra := range []string{"objectAlias: ..data", "objectAlias: ..x", "objectAlias: ../x", `objectAlias: "a\tb"`, "jmesPath: [{path: a, objectAlias: ..data}]"} {
		t.Run(extra, func(t *testing.T) {
			e := newEnv(t)
			e.secret(east, "db", `{"a": "v"}`)
			_, err := e.fetch(map[string]string{"objects": sm("db", extra)})
			if !errors.Is(err, provider.ErrInvalid) || !strings.Contains(err.Error(), "objects[0]") {
				t.Fatalf("Fetch = %v, want ErrInvalid naming objects[0]", err)
			}
			e.wantCalls(map[string]int{})
		})
	}
}

// yamlQuote writes s as a YAML double-quoted scalar that any valid UTF-8
// string survives: everything but printable ASCII is escaped.
func yamlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "\\U%08X", r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// checkNameAgreement checks that the provider refuses name as a file name
// (an objectAlias, a jmesPath objectAlias and a bare objectName) exactly
// when mount.ValidatePath refuses its translation, with a message naming the
// object, the field and the name as written.
func checkNameAgreement(t *testing.T, name, translation string) {
	t.Helper()
	sep, err := parseTranslation(translation)
	if err != nil || name == "" || !utf8.ValidString(name) {
		return // not expressible, or not a file-name question
	}
	p := translatePath(name, sep)
	mountErr := mount.ValidatePath(p)
	cases := []struct{ objects, loc, field string }{
		{"- {objectName: db, objectType: secretsmanager, objectAlias: " + yamlQuote(name) + "}", `objects[0] (objectName "db"): `, "objectAlias"},
	}
	if p != "m" && !strings.HasPrefix(p, "m/") { // else it collides with the object's own file
		cases = append(cases, struct{ objects, loc, field string }{
			"- {objectName: db, objectType: secretsmanager, objectAlias: m, jmesPath: [{path: a, objectAlias: " + yamlQuote(name) + "}]}",
			`objects[0] (objectName "db") jmesPath[0]: `, "objectAlias"})
	}
	if !strings.ContainsFunc(name, unicode.IsControl) && len(name) <= 2048 && !strings.HasPrefix(name, "arn:") {
		cases = append(cases, struct{ objects, loc, field string }{
			"- {objectName: " + yamlQuote(name) + ", objectType: secretsmanager}",
			fmt.Sprintf("objects[0] (objectName %q): ", name), "objectName"})
	}
	for _, c := range cases {
		_, err := parseParameters(map[string]string{"objects": c.objects, "pathTranslation": translation})
		switch {
		case mountErr == nil && err != nil:
			t.Fatalf("name %q (pathTranslation %q, %s): mount accepts %q, the provider refuses: %v", name, translation, c.field, p, err)
		case mountErr != nil && err == nil:
			t.Fatalf("name %q (pathTranslation %q, %s): the provider accepts, mount refuses: %v", name, translation, c.field, mountErr)
		case err != nil:
			want := c.loc + c.field + " " + mount.QuoteName(name) + ": " + mountErr.Error()
			if !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("name %q (pathTranslation %q):\nerror %s\nwant  %s[; hint]", name, translation, err, want)
			}
		}
	}
}

func TestNameAgreement(t *testing.T) {
	for _, name := range nameSeeds {
		for _, tr := range []string{"", "False", "-", "é", "."} {
			checkNameAgreement(t, name, tr)
		}
	}
}

var nameSeeds = []string{
	"ok", "a/b", "/a/b", ".env", "a..b", "..data", "..data_tmp", "..x", "...", "..", ".", "../x", "a/../b", "a/..",
	"./a", "a//b", "a/", "/", "dir/..data", "a\nb", "a\tb", "a\x7fb", "a\x00b", "a\u0085b", "ünï/cödé", "\ufeff",
	strings.Repeat("x", 255), strings.Repeat("x", 256), strings.Repeat("x/", 2048), strings.Repeat("x/", 2047) + "xx",
	"x.", "x./..", "a/./b", ".a/.b", ". /x", "a\\b", `a"b`,
}

func FuzzNameAgreement(f *testing.F) {
	for _, name := range nameSeeds {
		f.Add(name, "")
		f.Add(name, "False")
	}
	f.Add("a/b", ".")
	f.Fuzz(checkNameAgreement)
}

// benchObjects is a class of the size pods mount: ten objects of both
// stores, with aliases, versions, jmesPath entries and a failover object.
func benchObjects() string {
	var b strings.Builder
	for i := range 6 {
		fmt.Fprintf(&b, "- objectName: app/db-%d\n  objectType: secretsmanager\n  objectAlias: db-%d\n  filePermission: \"0400\"\n", i, i)
		if i == 0 {
			b.WriteString("  failoverObject: {objectName: app/db-0-replica, objectVersionLabel: AWSCURRENT}\n")
		}
		if i%2 == 0 {
			fmt.Fprintf(&b, "  jmesPath:\n  - {path: username, objectAlias: db-%d-user}\n  - {path: password, objectAlias: db-%d-password}\n", i, i)
		}
	}
	for i := range 4 {
		fmt.Fprintf(&b, "- {objectName: /app/param-%d, objectType: ssmparameter, objectVersion: \"%d\"}\n", i, i+1)
	}
	return b.String()
}

// BenchmarkParseParameters measures a parse-cache miss: the CPU a class
// costs the first time a node mounts it.
func BenchmarkParseParameters(b *testing.B) {
	params := map[string]string{"region": east, "failoverRegion": west, "objects": benchObjects()}
	if _, err := parseParameters(params); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseParameters(params); err != nil {
			b.Fatal(err)
		}
	}
}
