package v1alpha1

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWireContract pins what existing plugins speak: the full names of the
// service and its methods (the gRPC paths) and every message field's
// number, name and kind. A change here breaks every plugin on the wire, so
// this test fails before a regenerated file could ship one.
func TestWireContract(t *testing.T) {
	if got, want := CSIDriverProvider_Mount_FullMethodName, "/v1alpha1.CSIDriverProvider/Mount"; got != want {
		t.Errorf("Mount path = %q, want %q", got, want)
	}
	if got, want := CSIDriverProvider_Version_FullMethodName, "/v1alpha1.CSIDriverProvider/Version"; got != want {
		t.Errorf("Version path = %q, want %q", got, want)
	}
	type field struct {
		number protoreflect.FieldNumber
		name   string
		kind   protoreflect.Kind
		list   bool
	}
	want := map[proto.Message][]field{
		&VersionRequest{}:  {{1, "version", protoreflect.StringKind, false}},
		&VersionResponse{}: {{1, "version", protoreflect.StringKind, false}, {2, "runtime_name", protoreflect.StringKind, false}, {3, "runtime_version", protoreflect.StringKind, false}},
		&MountRequest{}: {
			{1, "attributes", protoreflect.StringKind, false},
			{2, "secrets", protoreflect.StringKind, false},
			{3, "target_path", protoreflect.StringKind, false},
			{4, "permission", protoreflect.StringKind, false},
			{5, "current_object_version", protoreflect.MessageKind, true},
		},
		&MountResponse{}: {
			{1, "object_version", protoreflect.MessageKind, true},
			{2, "error", protoreflect.MessageKind, false},
			{3, "files", protoreflect.MessageKind, true},
		},
		&ObjectVersion{}: {{1, "id", protoreflect.StringKind, false}, {2, "version", protoreflect.StringKind, false}},
		&Error{}:         {{1, "code", protoreflect.StringKind, false}},
		&File{}:          {{1, "path", protoreflect.StringKind, false}, {2, "mode", protoreflect.Int32Kind, false}, {3, "contents", protoreflect.BytesKind, false}},
	}
	for m, fields := range want {
		d := m.ProtoReflect().Descriptor()
		if got := string(d.ParentFile().Package()); got != "v1alpha1" {
			t.Errorf("%s: package %q, want v1alpha1", d.Name(), got)
		}
		if got := d.Fields().Len(); got != len(fields) {
			t.Errorf("%s has %d fields, want %d", d.Name(), got, len(fields))
		}
		for _, f := range fields {
			fd := d.Fields().ByNumber(f.number)
			switch {
			case fd == nil:
				t.Errorf("%s: no field number %d (%s)", d.Name(), f.number, f.name)
			case string(fd.Name()) != f.name || fd.Kind() != f.kind || fd.IsList() != f.list:
				t.Errorf("%s field %d = %s %v list=%v, want %s %v list=%v", d.Name(), f.number, fd.Name(), fd.Kind(), fd.IsList(), f.name, f.kind, f.list)
			}
		}
	}
}

// TestWireBytes checks one request and one answer against bytes encoded by
// hand from the field numbers, independently of the generated code.
func TestWireBytes(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, `{"a":"b"}`)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, "/t")
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, "420")
	var ov []byte
	ov = protowire.AppendTag(ov, 1, protowire.BytesType)
	ov = protowire.AppendString(ov, "id")
	ov = protowire.AppendTag(ov, 2, protowire.BytesType)
	ov = protowire.AppendString(ov, "v1")
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, ov)
	req := &MountRequest{Attributes: `{"a":"b"}`, TargetPath: "/t", Permission: "420", CurrentObjectVersion: []*ObjectVersion{{Id: "id", Version: "v1"}}}
	got, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(b) {
		t.Errorf("MountRequest encodes as %x, want %x", got, b)
	}

	var f []byte
	f = protowire.AppendTag(f, 1, protowire.BytesType)
	f = protowire.AppendString(f, "p")
	f = protowire.AppendTag(f, 2, protowire.VarintType)
	f = protowire.AppendVarint(f, 0o644)
	f = protowire.AppendTag(f, 3, protowire.BytesType)
	f = protowire.AppendBytes(f, []byte("x"))
	var e []byte
	e = protowire.AppendTag(e, 1, protowire.BytesType)
	e = protowire.AppendString(e, "E")
	var resp []byte
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	resp = protowire.AppendBytes(resp, ov)
	resp = protowire.AppendTag(resp, 2, protowire.BytesType)
	resp = protowire.AppendBytes(resp, e)
	resp = protowire.AppendTag(resp, 3, protowire.BytesType)
	resp = protowire.AppendBytes(resp, f)
	var m MountResponse
	if err := proto.Unmarshal(resp, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.ObjectVersion) != 1 || m.ObjectVersion[0].Version != "v1" || m.GetError().GetCode() != "E" ||
		len(m.Files) != 1 || m.Files[0].Path != "p" || m.Files[0].Mode != 0o644 || string(m.Files[0].Contents) != "x" {
		t.Errorf("MountResponse decoded as %v", &m)
	}
}
