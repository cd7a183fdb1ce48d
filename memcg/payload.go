package memcg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/mount"
)

// A payload is what the parent sends its child on stdin:
//
//	magic   "PSW1"
//	length  uint64, bytes after this field
//	dir     uint32 length, bytes
//	gid     uint8 0 (none) or 1, then int64
//	count   uint32
//	count × path uint32 length, bytes; mode uint32; data uint64 length, bytes
//
// Integers are little-endian. Every encoding is canonical (one byte string
// per payload), which is what lets the fuzzer check that decoding and
// re-encoding gives the input back.
const payloadMagic = "PSW1"

const (
	headerLen = len(payloadMagic) + 8
	// maxFiles and maxDataLen bound a file set far above any real secrets
	// volume (tmpfs sizes are megabytes) and keep a corrupt count from
	// turning into a huge allocation.
	maxFiles   = 10000
	maxDataLen = 1 << 30
	maxPathLen = mount.MaxPathLen
	// fileOverhead is what every file costs besides its path and data.
	fileOverhead = 4 + 4 + 8
	maxBodyLen   = 4 + maxPathLen + 1 + 8 + 4 + maxFiles*(fileOverhead+maxPathLen) + maxDataLen
)

var errTruncated = errors.New("payload truncated")

type payload struct {
	dir   string
	gid   *int64
	files []mount.File
}

// dataLen is the sum of the sizes of the files' data.
func (p payload) dataLen() int64 {
	var n int64
	for _, f := range p.files {
		n += int64(len(f.Data))
	}
	return n
}

func checkString(what, s string) error {
	if len(s) > maxPathLen {
		return fmt.Errorf("payload %s longer than %d bytes", what, maxPathLen)
	}
	return nil
}

// encodePayload returns p's encoding, refusing what decodePayload would.
func encodePayload(p payload) ([]byte, error) {
	if p.dir == "" {
		return nil, errors.New("payload directory is empty")
	}
	if err := checkString("directory", p.dir); err != nil {
		return nil, err
	}
	if len(p.files) > maxFiles {
		return nil, fmt.Errorf("payload has %d files, more than %d", len(p.files), maxFiles)
	}
	n := headerLen + 4 + len(p.dir) + 1 + 4
	if p.gid != nil {
		n += 8
	}
	var data int64
	for _, f := range p.files {
		if err := checkString("file name", f.Path); err != nil {
			return nil, err
		}
		data += int64(len(f.Data))
		if data > maxDataLen {
			return nil, fmt.Errorf("payload data larger than %d bytes", maxDataLen)
		}
		n += fileOverhead + len(f.Path) + len(f.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, payloadMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(n-headerLen))
	b = appendString(b, p.dir)
	if p.gid != nil {
		b = append(b, 1)
		b = binary.LittleEndian.AppendUint64(b, uint64(*p.gid))
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.files)))
	for _, f := range p.files {
		b = appendString(b, f.Path)
		b = binary.LittleEndian.AppendUint32(b, uint32(f.Mode))
		b = binary.LittleEndian.AppendUint64(b, uint64(len(f.Data)))
		b = append(b, f.Data...)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// decodePayload parses b. The files' data alias b, so a volume is held in
// memory once, not twice; everything else is copied. It allocates no more
// than len(b) justifies: a count or length is checked against what is left
// of b before anything is made for it.
func decodePayload(b []byte) (payload, error) {
	d := decoder{b: b}
	if string(d.take(len(payloadMagic))) != payloadMagic {
		if d.err != nil {
			return payload{}, d.err
		}
		return payload{}, errors.New("payload has a bad magic number")
	}
	if n := d.u64(); d.err == nil && n != uint64(len(d.b)) {
		return payload{}, errors.New("payload length does not match its header")
	}
	var p payload
	p.dir = d.str()
	if d.err == nil && p.dir == "" {
		return payload{}, errors.New("payload directory is empty")
	}
	switch d.u8() {
	case 0:
	case 1:
		gid := int64(d.u64())
		p.gid = &gid
	default:
		if d.err == nil {
			return payload{}, errors.New("payload has a bad group flag")
		}
	}
	count := d.u32()
	if d.err != nil {
		return payload{}, d.err
	}
	if count > maxFiles {
		return payload{}, fmt.Errorf("payload has %d files, more than %d", count, maxFiles)
	}
	if uint64(count)*fileOverhead > uint64(len(d.b)) {
		return payload{}, errTruncated
	}
	p.files = make([]mount.File, count)
	var total uint64
	for i := range p.files {
		path := d.str()
		mode := d.u32()
		n := d.u64()
		if d.err == nil && n > maxDataLen-total {
			return payload{}, fmt.Errorf("payload data larger than %d bytes", maxDataLen)
		}
		total += n
		data := d.take(int(n)) // n ≤ maxDataLen: fits an int
		if d.err != nil {
			return payload{}, d.err
		}
		p.files[i] = mount.File{Path: path, Mode: fs.FileMode(mode), Data: data}
	}
	if len(d.b) != 0 {
		return payload{}, errors.New("payload has trailing bytes")
	}
	return p, nil
}

// decoder reads b front to back; the first error sticks and later reads
// return zero values, so callers check once per step that matters.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = errTruncated
		return nil
	}
	// Cap the slice so appending to one file's data cannot overwrite the
	// next field.
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str() string {
	n := d.u32()
	if d.err == nil && n > maxPathLen {
		d.err = fmt.Errorf("payload string longer than %d bytes", maxPathLen)
	}
	return string(d.take(int(n)))
}

// readPayload reads one whole payload from r and then insists on EOF: the
// parent closes the pipe only after the child has joined the pod's cgroup,
// so returning means the child may write.
//
// The buffer is an anonymous mapping of the length the header announces.
// Only pages the read fills are backed, and so charged to the pod: a volume
// costs its size once, where growing a slice as bytes arrive would briefly
// hold it one and a half times, and a header that lies costs address space,
// not memory. The child exits right after writing, so the mapping is never
// unmapped.
func readPayload(r io.Reader) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read payload header: %w", err)
	}
	if string(hdr[:len(payloadMagic)]) != payloadMagic {
		return nil, errors.New("payload has a bad magic number")
	}
	n := binary.LittleEndian.Uint64(hdr[len(payloadMagic):])
	if n > maxBodyLen {
		return nil, fmt.Errorf("payload of %d bytes is larger than %d", n, maxBodyLen)
	}
	buf, err := unix.Mmap(-1, 0, headerLen+int(n), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map payload buffer: %w", err)
	}
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[headerLen:]); err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	var extra [1]byte
	switch _, err := io.ReadFull(r, extra[:]); {
	case err == nil:
		return nil, errors.New("payload has trailing bytes")
	case err != io.EOF:
		return nil, fmt.Errorf("read payload end: %w", err)
	}
	return buf, nil
}
