package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// readTar returns every regular file of a tarball by name, plus all headers.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	hdrs := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return files, hdrs
}

func makeRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "etc/secret"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "bin/tool"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Chmod(filepath.Join(dir, "bin/tool"), 0o755|os.ModeSetuid)) // setuid survives
	must(os.WriteFile(filepath.Join(dir, "etc/secret/key"), []byte("k"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "etc/empty"), nil, 0o644))
	must(os.Symlink("tool", filepath.Join(dir, "bin/sh")))
	must(os.Link(filepath.Join(dir, "bin/tool"), filepath.Join(dir, "bin/tool2")))
	return dir
}

func TestBuildImageLayout(t *testing.T) {
	for _, gz := range []bool{true, false} {
		t.Run(map[bool]string{true: "gzip", false: "plain"}[gz], func(t *testing.T) {
			rootfs := makeRootfs(t)
			out := filepath.Join(t.TempDir(), "img.tar")
			const ref = "docker.io/local/test:e2e"
			manDigest, err := build(options{
				rootfs: rootfs, name: ref, out: out, gzip: gz,
				entrypoint: []string{"/bin/tool"}, cmd: []string{"a", "b"}, env: []string{"FOO=bar"},
			})
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			files, _ := readTar(t, f)

			if got := string(files["oci-layout"]); !strings.Contains(got, `"imageLayoutVersion":"1.0.0"`) {
				t.Fatalf("oci-layout = %q", got)
			}
			// Every blob is named by its own digest.
			for name, data := range files {
				if strings.HasPrefix(name, "blobs/sha256/") {
					if want := "sha256:" + strings.TrimPrefix(name, "blobs/sha256/"); sha(data) != want {
						t.Errorf("blob %s has digest %s", name, sha(data))
					}
				}
			}
			blobOf := func(d descriptor) []byte {
				t.Helper()
				b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
				if !ok {
					t.Fatalf("blob %s missing", d.Digest)
				}
				if int64(len(b)) != d.Size {
					t.Fatalf("blob %s: size %d, descriptor says %d", d.Digest, len(b), d.Size)
				}
				if sha(b) != d.Digest {
					t.Fatalf("blob %s: digest %s", d.Digest, sha(b))
				}
				return b
			}

			var idx index
			if err := json.Unmarshal(files["index.json"], &idx); err != nil {
				t.Fatal(err)
			}
			if idx.SchemaVersion != 2 || len(idx.Manifests) != 1 {
				t.Fatalf("index = %+v", idx)
			}
			md := idx.Manifests[0]
			if md.Digest != manDigest || md.MediaType != mediaTypeManifest {
				t.Fatalf("index manifest descriptor = %+v, want digest %s", md, manDigest)
			}
			if md.Annotations[annotationContainerdName] != ref || md.Annotations[annotationRefName] != "e2e" {
				t.Fatalf("annotations = %v", md.Annotations)
			}
			if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
				t.Fatalf("platform = %+v", md.Platform)
			}

			var man manifest
			if err := json.Unmarshal(blobOf(md), &man); err != nil {
				t.Fatal(err)
			}
			if man.SchemaVersion != 2 || man.Config.MediaType != mediaTypeConfig || len(man.Layers) != 1 {
				t.Fatalf("manifest = %+v", man)
			}
			var cfg imageConfig
			if err := json.Unmarshal(blobOf(man.Config), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != "amd64" {
				t.Fatalf("config platform = %s/%s", cfg.OS, cfg.Architecture)
			}
			if strings.Join(cfg.Config.Entrypoint, " ") != "/bin/tool" || strings.Join(cfg.Config.Cmd, " ") != "a b" {
				t.Fatalf("entrypoint/cmd = %v %v", cfg.Config.Entrypoint, cfg.Config.Cmd)
			}
			if !hasEnv(cfg.Config.Env, "PATH") || !hasEnv(cfg.Config.Env, "FOO") {
				t.Fatalf("env = %v", cfg.Config.Env)
			}

			layerBlob := blobOf(man.Layers[0])
			var layerTar io.Reader = bytes.NewReader(layerBlob)
			if gz {
				if man.Layers[0].MediaType != mediaTypeLayerGz {
					t.Fatalf("layer media type %s", man.Layers[0].MediaType)
				}
				zr, err := gzip.NewReader(layerTar)
				if err != nil {
					t.Fatal(err)
				}
				layerTar = zr
			} else if man.Layers[0].MediaType != mediaTypeLayer {
				t.Fatalf("layer media type %s", man.Layers[0].MediaType)
			}
			raw, err := io.ReadAll(layerTar)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != sha(raw) {
				t.Fatalf("diff_ids %v, uncompressed layer is %s", cfg.RootFS.DiffIDs, sha(raw))
			}

			lfiles, lhdrs := readTar(t, bytes.NewReader(raw))
			for name, h := range lhdrs {
				if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
					t.Errorf("%s owned by %d:%d (%s:%s)", name, h.Uid, h.Gid, h.Uname, h.Gname)
				}
				if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "./") {
					t.Errorf("entry name %q is not relative", name)
				}
			}
			wantModes := map[string]int64{"bin/": 0o755, "etc/secret/": 0o700, "bin/tool": 0o4755, "etc/secret/key": 0o600, "etc/empty": 0o644}
			for name, mode := range wantModes {
				h, ok := lhdrs[name]
				if !ok {
					t.Fatalf("layer lacks %s (has %v)", name, keys(lhdrs))
				}
				if got := h.Mode & 0o7777; got != mode {
					t.Errorf("%s mode %o, want %o", name, got, mode)
				}
			}
			if string(lfiles["bin/tool"]) != "#!/bin/sh\necho hi\n" || string(lfiles["etc/secret/key"]) != "k" {
				t.Errorf("file contents wrong")
			}
			if h := lhdrs["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "tool" {
				t.Errorf("bin/sh = %+v", h)
			}
			if h := lhdrs["bin/tool2"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/tool" {
				t.Errorf("bin/tool2 = %+v", h)
			}

			// Reproducible: building again gives the same manifest digest.
			out2 := filepath.Join(t.TempDir(), "img2.tar")
			d2, err := build(options{rootfs: rootfs, name: ref, out: out2, gzip: gz,
				entrypoint: []string{"/bin/tool"}, cmd: []string{"a", "b"}, env: []string{"FOO=bar"}})
			if err != nil {
				t.Fatal(err)
			}
			if d2 != manDigest {
				t.Errorf("rebuild digest %s != %s", d2, manDigest)
			}
		})
	}
}

func TestRefTag(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/local/busybox:e2e": "e2e",
		"localhost:5000/x":            "",
		"localhost:5000/x:1":          "1",
		"x@sha256:abc":                "",
	} {
		if got := refTag(ref); got != want {
			t.Errorf("refTag(%q) = %q, want %q", ref, got, want)
		}
	}
}

func keys(m map[string]*tar.Header) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
