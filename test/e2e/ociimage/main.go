// Command ociimage turns a root filesystem directory into a single-layer OCI
// image-layout tarball that `ctr -n k8s.io images import` accepts, so the e2e
// cluster can run images without any registry. Standard library only.
//
//	go run ./test/e2e/ociimage -rootfs DIR -name docker.io/local/NAME:TAG -o out.tar \
//	    [-entrypoint /bin/x]... [-cmd arg]... [-env K=V]... [-workdir /] [-user 0:0]
//
// -entrypoint, -cmd and -env may be repeated; each occurrence is one element.
// Every file in the layer is owned by root (uid/gid 0); modes, symlinks and hard
// links are preserved; timestamps are fixed so the output is reproducible.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// epoch is the timestamp given to every file and to the image (reproducible output).
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type options struct {
	rootfs     string
	name       string
	out        string
	entrypoint []string
	cmd        []string
	env        []string
	workdir    string
	user       string
	gzip       bool
	arch       string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o options
	var entrypoint, cmd, env listFlag
	flag.StringVar(&o.rootfs, "rootfs", "", "root filesystem directory (required)")
	flag.StringVar(&o.name, "name", "", "image reference, e.g. docker.io/local/busybox:e2e (required)")
	flag.StringVar(&o.out, "o", "", "output tarball (required)")
	flag.Var(&entrypoint, "entrypoint", "entrypoint element (repeatable)")
	flag.Var(&cmd, "cmd", "cmd element (repeatable)")
	flag.Var(&env, "env", "environment variable K=V (repeatable; PATH has a default)")
	flag.StringVar(&o.workdir, "workdir", "", "working directory")
	flag.StringVar(&o.user, "user", "", "user[:group]")
	flag.BoolVar(&o.gzip, "gzip", true, "gzip-compress the layer")
	flag.StringVar(&o.arch, "arch", "amd64", "image architecture (os is linux)")
	flag.Parse()
	o.entrypoint, o.cmd, o.env = entrypoint, cmd, env
	if o.rootfs == "" || o.name == "" || o.out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: ociimage -rootfs DIR -name REF -o OUT.tar [-entrypoint X]... [-cmd X]... [-env K=V]...")
		os.Exit(2)
	}
	digest, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s %s\n", o.out, o.name, digest)
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type imageConfig struct {
	Created      time.Time      `json:"created"`
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Config       containerConf  `json:"config"`
	RootFS       rootFS         `json:"rootfs"`
	History      []historyEntry `json:"history"`
}

type containerConf struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type historyEntry struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

type blob struct {
	digest string
	size   int64
	data   []byte // small blobs
	path   string // large blobs (the layer), read from a temp file
}

// build writes the image tarball and returns the manifest digest.
func build(o options) (string, error) {
	st, err := os.Stat(o.rootfs)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s is not a directory", o.rootfs)
	}
	if o.arch == "" {
		o.arch = "amd64"
	}

	outDir := filepath.Dir(o.out)
	layerFile, err := os.CreateTemp(outDir, ".layer-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(layerFile.Name())
	defer layerFile.Close()

	compressed := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(layerFile, compressed)}
	uncompressed := sha256.New()
	var gz *gzip.Writer
	var tarDst io.Writer = counter
	if o.gzip {
		gz, err = gzip.NewWriterLevel(counter, gzip.BestCompression)
		if err != nil {
			return "", err
		}
		gz.ModTime = epoch
		tarDst = gz
	}
	if err := writeLayer(o.rootfs, io.MultiWriter(tarDst, uncompressed)); err != nil {
		return "", fmt.Errorf("layer: %w", err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return "", err
		}
	}
	if err := layerFile.Close(); err != nil {
		return "", err
	}
	diffID := digestOf(uncompressed)
	layer := blob{digest: digestOf(compressed), size: counter.n, path: layerFile.Name()}
	layerType := mediaTypeLayer
	if o.gzip {
		layerType = mediaTypeLayerGz
	}

	env := o.env
	if !hasEnv(env, "PATH") {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	cfg := imageConfig{
		Created:      epoch,
		Architecture: o.arch,
		OS:           "linux",
		Config: containerConf{
			User:       o.user,
			Env:        env,
			Entrypoint: o.entrypoint,
			Cmd:        o.cmd,
			WorkingDir: o.workdir,
		},
		RootFS:  rootFS{Type: "layers", DiffIDs: []string{diffID}},
		History: []historyEntry{{Created: epoch, CreatedBy: "podsecrets test/e2e/ociimage"}},
	}
	cfgBlob, err := jsonBlob(cfg)
	if err != nil {
		return "", err
	}
	man := manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: cfgBlob.digest, Size: cfgBlob.size},
		Layers:        []descriptor{{MediaType: layerType, Digest: layer.digest, Size: layer.size}},
	}
	manBlob, err := jsonBlob(man)
	if err != nil {
		return "", err
	}
	annotations := map[string]string{annotationContainerdName: o.name}
	if tag := refTag(o.name); tag != "" {
		annotations[annotationRefName] = tag
	}
	idx := index{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []descriptor{{
			MediaType:   mediaTypeManifest,
			Digest:      manBlob.digest,
			Size:        manBlob.size,
			Platform:    &platform{Architecture: o.arch, OS: "linux"},
			Annotations: annotations,
		}},
	}
	idxJSON, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return "", err
	}

	tmpOut, err := os.CreateTemp(outDir, ".image-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmpOut.Name())
	defer tmpOut.Close()
	tw := tar.NewWriter(tmpOut)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return "", err
		}
	}
	if err := addBytes(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return "", err
	}
	if err := addBytes(tw, "index.json", idxJSON); err != nil {
		return "", err
	}
	for _, b := range []blob{cfgBlob, manBlob, layer} {
		if err := addBlob(tw, b); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := tmpOut.Chmod(0o644); err != nil {
		return "", err
	}
	if err := tmpOut.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmpOut.Name(), o.out); err != nil {
		return "", err
	}
	return manBlob.digest, nil
}

// writeLayer writes rootfs as a tar stream: sorted, root-owned, fixed timestamps.
func writeLayer(rootfs string, w io.Writer) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil // sockets cannot be archived
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		hdr.Name = name
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		hdr.PAXRecords = nil
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("%s: changed size while archiving", path)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func addBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func addBlob(tw *tar.Writer, b blob) error {
	name := "blobs/sha256/" + strings.TrimPrefix(b.digest, "sha256:")
	if b.path == "" {
		return addBytes(tw, name, b.data)
	}
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: b.size, ModTime: epoch}); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != b.size {
		err = errors.New("layer size changed")
	}
	return err
}

func jsonBlob(v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), size: int64(len(data)), data: data}, nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// refTag returns the tag of an image reference ("" when it has none).
func refTag(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[colon+1:]
	}
	return ""
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
