package memcg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/podsecrets/podsecrets/mount"
)

func samplePayload() payload {
	gid := int64(2000)
	return payload{
		dir: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets/mount",
		gid: &gid,
		files: []mount.File{
			{Path: "db-password", Mode: 0o440, Data: []byte("hunter2")},
			{Path: "tls/key.pem", Mode: 0o400, Data: bytes.Repeat([]byte{0, 0xff}, 3000)},
			{Path: "empty", Mode: 0o644},
		},
	}
}

func samePayload(a, b payload) bool {
	if a.dir != b.dir || (a.gid == nil) != (b.gid == nil) || a.gid != nil && *a.gid != *b.gid || len(a.files) != len(b.files) {
		return false
	}
	for i := range a.files {
		x, y := a.files[i], b.files[i]
		if x.Path != y.Path || x.Mode != y.Mode || !bytes.Equal(x.Data, y.Data) {
			return false
		}
	}
	return true
}

func TestPayloadRoundTrip(t *testing.T) {
	noGID := samplePayload()
	noGID.gid = nil
	negGID := samplePayload()
	g := int64(-1)
	negGID.gid = &g
	for _, p := range []payload{samplePayload(), noGID, negGID, {dir: "/d"}} {
		b, err := encodePayload(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodePayload(b)
		if err != nil {
			t.Fatal(err)
		}
		if !samePayload(p, got) {
			t.Errorf("round trip: got %+v, want %+v", got, p)
		}
		read, err := readPayload(bytes.NewReader(b))
		if err != nil || !bytes.Equal(read, b) {
			t.Errorf("readPayload = %d bytes, %v; want the %d encoded", len(read), err, len(b))
		}
	}
}

func TestPayloadDataIsCapped(t *testing.T) {
	b, err := encodePayload(samplePayload())
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePayload(b)
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(b)
	_ = append(p.files[0].Data, 'X')
	if !bytes.Equal(b, before) {
		t.Fatal("appending to a file's data overwrote the payload")
	}
}

func TestEncodePayloadBounds(t *testing.T) {
	long := strings.Repeat("a", maxPathLen+1)
	// Shared, so the case costs half of maxDataLen of untouched memory.
	half := make([]byte, maxDataLen/2+1)
	for name, p := range map[string]payload{
		"empty dir":  {},
		"long dir":   {dir: long},
		"long path":  {dir: "/d", files: []mount.File{{Path: long}}},
		"many files": {dir: "/d", files: make([]mount.File, maxFiles+1)},
		"large data": {dir: "/d", files: []mount.File{{Path: "a", Data: half}, {Path: "b", Data: half}}},
	} {
		if _, err := encodePayload(p); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestDecodePayloadRefuses(t *testing.T) {
	good, err := encodePayload(samplePayload())
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// withBody rewrites the header's length so only the mutation is wrong.
	withBody := func(body []byte) []byte {
		b := append([]byte(payloadMagic), le.AppendUint64(nil, uint64(len(body)))...)
		return append(b, body...)
	}
	body := good[headerLen:]
	dirLen := int(le.Uint32(body))
	flagAt := 4 + dirLen
	countAt := flagAt + 1 + 8
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short header":   good[:headerLen-1],
		"bad magic":      append([]byte("PSW2"), good[4:]...),
		"length too big": append(append([]byte(payloadMagic), le.AppendUint64(nil, uint64(len(body)+1))...), body...),
		"truncated":      withBody(body[:len(body)-1]),
		"trailing":       withBody(append(bytes.Clone(body), 0)),
		"bad gid flag":   withBody(func() []byte { c := bytes.Clone(body); c[flagAt] = 2; return c }()),
		"huge count":     withBody(func() []byte { c := bytes.Clone(body); le.PutUint32(c[countAt:], maxFiles+1); return c }()),
		"count > bytes":  withBody(func() []byte { c := bytes.Clone(body); le.PutUint32(c[countAt:], maxFiles); return c }()),
		"long string":    withBody(le.AppendUint32(nil, maxPathLen+1)),
		"empty dir":      withBody(append(le.AppendUint32(nil, 0), 0, 0, 0, 0, 0)),
		"huge data": withBody(func() []byte {
			b := appendString(nil, "/d")
			b = append(b, 0)
			b = le.AppendUint32(b, 1)
			b = appendString(b, "f")
			b = le.AppendUint32(b, 0)
			return le.AppendUint64(b, 1<<62)
		}()),
	} {
		if _, err := decodePayload(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// eofProbe serves r and records whether it was read again after r was
// exhausted, which is readPayload asking for the end of the stream.
type eofProbe struct {
	r      io.Reader
	probed bool
}

func (e *eofProbe) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.probed = true
	}
	return n, err
}

func TestReadPayloadWaitsForEOF(t *testing.T) {
	b, err := encodePayload(samplePayload())
	if err != nil {
		t.Fatal(err)
	}
	r := &eofProbe{r: bytes.NewReader(b)}
	if _, err := readPayload(r); err != nil {
		t.Fatal(err)
	}
	if !r.probed {
		t.Fatal("readPayload returned before seeing the end of its input")
	}
}

func TestReadPayloadRefuses(t *testing.T) {
	good, err := encodePayload(samplePayload())
	if err != nil {
		t.Fatal(err)
	}
	huge := append([]byte(payloadMagic), binary.LittleEndian.AppendUint64(nil, maxBodyLen+1)...)
	for name, b := range map[string][]byte{
		"empty":       nil,
		"short":       good[:len(good)-1],
		"trailing":    append(bytes.Clone(good), 0),
		"bad magic":   append([]byte("XXXX"), good[4:]...),
		"huge length": huge,
	} {
		if _, err := readPayload(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: read", name)
		}
	}
	// A header claiming the maximum with nothing after it maps address
	// space only; the read fails on the missing bytes.
	lying := append([]byte(payloadMagic), binary.LittleEndian.AppendUint64(nil, maxBodyLen)...)
	if _, err := readPayload(bytes.NewReader(lying)); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("lying header: err = %v, want EOF", err)
	}
}

func FuzzDecodePayload(f *testing.F) {
	for _, p := range []payload{samplePayload(), {dir: "/d"}} {
		b, err := encodePayload(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(payloadMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePayload(b)
		if err != nil {
			return
		}
		// The encoding is canonical: what decodes re-encodes to itself.
		again, err := encodePayload(p)
		if err != nil {
			t.Fatalf("decoded payload does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}
