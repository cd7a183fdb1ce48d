package aws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
	"sigs.k8s.io/yaml"

	"github.com/podsecrets/podsecrets/internal/suggest"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
)

// Parameter keys of spec.parameters, as the incumbent AWS provider spells them.
const (
	paramObjects         = "objects"
	paramRegion          = "region"
	paramFailoverRegion  = "failoverRegion"
	paramPathTranslation = "pathTranslation"
	paramUsePodIdentity  = "usePodIdentity"
	paramAddressType     = "preferredAddressType"
)

// objectType is the store an object lives in.
type objectType string

const (
	typeSecretsManager objectType = "secretsmanager"
	typeSSMParameter   objectType = "ssmparameter"
)

// labelCurrent is the Secrets Manager staging label of the current version.
const labelCurrent = "AWSCURRENT"

const (
	defaultMode    fs.FileMode = 0o644
	maxObjectsYAML             = 1 << 20 // bytes; Kubernetes objects are smaller anyway
)

// config is spec.parameters, parsed and validated once per class and
// provider (see parseCache).
type config struct {
	// Region is the volume's region: the class's region parameter, which
	// parseParameters leaves empty when there is none, then the driver's
	// default (resolveRegion). FailoverRegion is the class's.
	Region         string
	FailoverRegion string
	// PodIdentity selects EKS Pod Identity instead of IRSA.
	PodIdentity bool
	// IPv6Agent selects the Pod Identity agent's IPv6 address
	// (preferredAddressType: ipv6).
	IPv6Agent bool
	// Translate replaces "/" in file names; 0 means no translation.
	Translate rune
	Objects   []object
	// Ignored lists the unknown keys that were ignored (top-level keys and
	// object fields), for a debug log line.
	Ignored []string
	// Unknown are the ignored keys of objects entries (the object fields
	// part of Ignored), which Fetch reports as warnings.
	Unknown []unknownKey
}

// unknownKey is a key of an objects entry (or of its failoverObject or a
// jmesPath entry) that names no field. It is ignored, as the incumbent
// provider does, and reported.
type unknownKey struct {
	// Loc is where the key is, like objects[0].objectAlais, for messages.
	Loc string
	// Suggest is the known key it is likely a typo of, or "".
	Suggest string
}

// ref names one version of a store object.
type ref struct {
	Name    string
	Version string // Secrets Manager VersionId or SSM version number
	Label   string // Secrets Manager VersionStage or SSM label
}

// object is one entry of the objects list.
type object struct {
	Index int
	Type  objectType
	ref
	// Failover replaces ref in the failover region when set.
	Failover *ref
	// Path is the file name, relative to the volume root, after translation.
	Path string
	Mode fs.FileMode
	JMES []jmesEntry
	// Optional: an object the store does not have (ErrNotFound) is left
	// out of the volume, with its jmesPath files, instead of failing it.
	Optional bool
}

// jmesEntry extracts one string field of a JSON value into its own file.
type jmesEntry struct {
	Expr string
	expr *jmespath.JMESPath
	Path string
	Mode fs.FileMode
}

// refIn is the ref used in the primary (failover=false) or failover region.
func (o *object) refIn(failover bool) ref {
	if failover && o.Failover != nil {
		return *o.Failover
	}
	return o.ref
}

// describe names the object in messages.
func (o *object) describe() string {
	return fmt.Sprintf("objects[%d] (objectName %q)", o.Index, o.Name)
}

// rawObject is one objects entry as written. Strings accept YAML numbers and
// booleans (sigs.k8s.io/yaml coerces them), except filePermission, where an
// unquoted 0600 would silently be read as the octal number 384.
type rawObject struct {
	ObjectName         string       `json:"objectName"`
	ObjectType         string       `json:"objectType"`
	ObjectAlias        string       `json:"objectAlias"`
	ObjectVersion      string       `json:"objectVersion"`
	ObjectVersionLabel string       `json:"objectVersionLabel"`
	FilePermission     permission   `json:"filePermission"`
	JMESPath           []rawJMES    `json:"jmesPath"`
	FailoverObject     *rawFailover `json:"failoverObject"`
	// Optional is ours: the incumbent provider has no such key (it
	// ignores it, so there the object is required).
	Optional boolean `json:"optional"`
}

type rawJMES struct {
	Path           string     `json:"path"`
	ObjectAlias    string     `json:"objectAlias"`
	FilePermission permission `json:"filePermission"`
}

type rawFailover struct {
	ObjectName         string `json:"objectName"`
	ObjectVersion      string `json:"objectVersion"`
	ObjectVersionLabel string `json:"objectVersionLabel"`
}

var (
	knownObjectFields   = []string{"objectName", "objectType", "objectAlias", "objectVersion", "objectVersionLabel", "filePermission", "jmesPath", "failoverObject", "optional"}
	knownJMESFields     = []string{"path", "objectAlias", "filePermission"}
	knownFailoverFields = []string{"objectName", "objectVersion", "objectVersionLabel"}
)

// scalar is a YAML scalar as written, kept so that its field can say what
// is wrong with it: decoding into a typed field would fail the whole
// objects list with the decoder's message instead.
type scalar struct {
	set    bool
	text   string
	quoted bool // a YAML string, not a number or a boolean
}

// UnmarshalJSON keeps the value as written and remembers whether it was a
// string.
func (p *scalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*p = scalar{}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = scalar{set: true, text: s, quoted: true}
	default:
		*p = scalar{set: true, text: string(b)}
	}
	return nil
}

// permission is a filePermission value as written.
type permission struct{ scalar }

// boolean is a true/false field as written: a YAML boolean, or the string
// "true" or "false" (every other field takes strings, so people quote).
type boolean struct{ scalar }

// value parses b, field naming it in the error; absent is false.
func (b boolean) value(field string) (bool, error) {
	switch {
	case !b.set:
		return false, nil
	case strings.EqualFold(b.text, "true"):
		return true, nil
	case strings.EqualFold(b.text, "false"):
		return false, nil
	case b.quoted:
		return false, fmt.Errorf("%s %q: want true or false", field, b.text)
	}
	return false, fmt.Errorf("%s %s: want true or false", field, b.text)
}

// mode parses p, defaulting to 0644.
func (p permission) mode() (fs.FileMode, error) {
	if !p.set {
		return defaultMode, nil
	}
	if !p.quoted {
		return 0, fmt.Errorf("filePermission %s is a YAML number (an unquoted 0600 reads as 384): quote it, like \"0600\"", p.text)
	}
	return parseMode(p.text)
}

// parseMode parses a 4-digit octal mode no larger than 0777.
func parseMode(s string) (fs.FileMode, error) {
	bad := fmt.Errorf("filePermission %q: want a 4-digit octal mode like \"0600\"", s)
	if len(s) != 4 {
		return 0, bad
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, bad
		}
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, bad
	}
	if v > 0o777 {
		return 0, fmt.Errorf("filePermission %q: setuid, setgid and sticky bits are not allowed; want at most \"0777\"", s)
	}
	return fs.FileMode(v), nil
}

var (
	regionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	// ssmLabelRE is the SSM parameter label syntax; labels can't start with a
	// digit, so "name:3" always means a version.
	ssmLabelRE = regexp.MustCompile(`^[A-Za-z_.\-][A-Za-z0-9_.\-]{0,99}$`)
)

// invalidf builds an ErrInvalid error with exactly the given message.
func invalidf(format string, args ...any) error {
	return &kindError{kind: provider.ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

// validRegion checks a region code; it becomes part of endpoint host names.
func validRegion(r string) bool {
	return len(r) <= 64 && regionRE.MatchString(r)
}

// parseParameters parses and validates spec.parameters. Every error wraps
// provider.ErrInvalid and names the offending object and field.
func parseParameters(params map[string]string) (*config, error) {
	cfg := &config{Translate: '_'}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := params[k]
		switch k {
		case paramObjects:
			// parsed below
		case paramRegion:
			if v != "" && !validRegion(v) {
				return nil, invalidf("region %q: not a region code like \"us-east-1\"", v)
			}
			cfg.Region = v
		case paramFailoverRegion:
			if v != "" && !validRegion(v) {
				return nil, invalidf("failoverRegion %q: not a region code like \"us-west-2\"", v)
			}
			cfg.FailoverRegion = v
		case paramPathTranslation:
			t, err := parseTranslation(v)
			if err != nil {
				return nil, err
			}
			cfg.Translate = t
		case paramUsePodIdentity:
			if v == "" {
				break
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, invalidf("usePodIdentity %q: want \"true\" or \"false\"", v)
			}
			cfg.PodIdentity = b
		case paramAddressType:
			switch strings.ToLower(v) {
			case "", "auto", "ipv4":
			case "ipv6":
				cfg.IPv6Agent = true
			default:
				return nil, invalidf("preferredAddressType %q: want \"ipv4\", \"ipv6\" or \"auto\"", v)
			}
		case "secretProviderClass":
			// Not added by this driver, which passes spec.parameters as
			// they are: the Secrets Store CSI Driver adds it, and the
			// csi.storage.k8s.io/ keys below (pod info, tokens), to what
			// its providers get, so a class written from that may carry
			// them. Ignored without a log line.
		default:
			if strings.HasPrefix(k, "csi.storage.k8s.io/") {
				break // as secretProviderClass above
			}
			cfg.Ignored = append(cfg.Ignored, k)
		}
	}
	if cfg.FailoverRegion != "" && cfg.FailoverRegion == cfg.Region {
		return nil, invalidf("failoverRegion %q: must differ from region", cfg.FailoverRegion)
	}

	objs, ok := params[paramObjects]
	if !ok || strings.TrimSpace(objs) == "" {
		return nil, invalidf("objects: required: a YAML list of objects to mount")
	}
	if err := cfg.parseObjects(objs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseTranslation parses pathTranslation: one character, or "False".
func parseTranslation(v string) (rune, error) {
	if v == "" {
		return '_', nil
	}
	if strings.EqualFold(v, "false") {
		return 0, nil
	}
	r, size := utf8.DecodeRuneInString(v)
	if size != len(v) || r == utf8.RuneError {
		return 0, invalidf("pathTranslation %q: want a single character, or \"False\"", v)
	}
	if r == '/' || r == '\\' || r == 0 || !unicode.IsPrint(r) || unicode.IsSpace(r) {
		return 0, invalidf("pathTranslation %q: not usable in a file name; want a character like \"_\" or \"-\", or \"False\"", v)
	}
	return r, nil
}

// translatePath replaces every "/" in name with sep; sep 0 keeps name as is.
func translatePath(name string, sep rune) string {
	if sep == 0 || sep == '/' {
		return name
	}
	return strings.ReplaceAll(name, "/", string(sep))
}

// validateFileName checks p, the file name that field (written as written)
// gives after pathTranslation, with the rules of the mount package, which
// writes the files: a class the driver can't mount is refused when it is
// parsed, before any store call. The message names the field and the name as
// written; mount's message adds the translated name, and hints say what to
// change.
func validateFileName(field, written, p string) error {
	err := mount.ValidatePath(p)
	if err == nil {
		return nil
	}
	msg := err.Error()
	var ne *mount.NameError
	if errors.As(err, &ne) {
		switch ne.Rule {
		case mount.NameAbsolute:
			msg += " (pathTranslation is off); set objectAlias or pathTranslation"
		case mount.NameLongElement:
			msg += "; set objectAlias"
		}
	}
	return fmt.Errorf("%s %s: %s", field, mount.QuoteName(written), msg)
}

// arnInfo is what an ARN objectName tells about the object.
type arnInfo struct {
	Service string
	Region  string
}

// parseARN splits "arn:partition:service:region:account:resource".
func parseARN(s string) (arnInfo, bool) {
	if !strings.HasPrefix(s, "arn:") {
		return arnInfo{}, false
	}
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 {
		return arnInfo{}, false
	}
	return arnInfo{Service: parts[2], Region: parts[3]}, true
}

// typeOfARN maps an ARN's service to an object type.
func typeOfARN(service string) (objectType, bool) {
	switch service {
	case "secretsmanager":
		return typeSecretsManager, true
	case "ssm":
		return typeSSMParameter, true
	}
	return "", false
}

// fileOwners tracks which object writes which file, to reject collisions.
type fileOwners struct {
	files map[string]string // path → owner description
	dirs  map[string]string // directory implied by a path → owner description
}

func (f *fileOwners) add(p, owner string) error {
	if prev, ok := f.files[p]; ok {
		return fmt.Errorf("file name %q is also used by %s", p, prev)
	}
	if prev, ok := f.dirs[p]; ok {
		return fmt.Errorf("file name %q is a directory of %s's file", p, prev)
	}
	for i := range len(p) {
		if p[i] != '/' {
			continue
		}
		dir := p[:i]
		if prev, ok := f.files[dir]; ok {
			return fmt.Errorf("file name %q needs directory %q, which is %s's file", p, dir, prev)
		}
	}
	f.files[p] = owner
	for i := range len(p) {
		if p[i] == '/' {
			if _, ok := f.dirs[p[:i]]; !ok {
				f.dirs[p[:i]] = owner
			}
		}
	}
	return nil
}

// parseObjects parses the objects YAML into cfg.Objects.
func (cfg *config) parseObjects(text string) error {
	if len(text) > maxObjectsYAML {
		return invalidf("objects: longer than %d bytes", maxObjectsYAML)
	}
	shape, raws, err := decodeObjects([]byte(text))
	if err != nil {
		return err
	}
	if len(raws) != len(shape) { // cannot happen; be safe
		return invalidf("objects: want a YAML list of objects")
	}
	if len(raws) == 0 {
		return invalidf("objects: the list is empty")
	}
	for i, m := range shape {
		if m == nil {
			return invalidf("objects[%d]: want an object with objectName, got an empty entry", i)
		}
		if _, ok := m["objectTemplate"]; ok {
			return invalidf("objects[%d] (objectName %q): objectTemplate is not supported", i, raws[i].ObjectName)
		}
		cfg.unknownKeys(fmt.Sprintf("objects[%d]", i), m, knownObjectFields)
		if fo, ok := m["failoverObject"].(map[string]any); ok {
			cfg.unknownKeys(fmt.Sprintf("objects[%d].failoverObject", i), fo, knownFailoverFields)
		}
		if js, ok := m["jmesPath"].([]any); ok {
			for j, e := range js {
				if em, ok := e.(map[string]any); ok {
					cfg.unknownKeys(fmt.Sprintf("objects[%d].jmesPath[%d]", i, j), em, knownJMESFields)
				}
			}
		}
	}

	owners := &fileOwners{files: map[string]string{}, dirs: map[string]string{}}
	for i := range raws {
		o, err := cfg.parseObject(i, &raws[i], owners)
		if err != nil {
			return err
		}
		cfg.Objects = append(cfg.Objects, o)
	}
	return nil
}

// decodeObjects decodes the objects YAML into its entries (raws) and the
// keys each was written with (shape, for unknown keys and the checks of
// its form), parsing the YAML once: the parse is most of a class's parse
// CPU, and decoding the text twice, once per result, doubled it.
// sigs.k8s.io/yaml converts YAML to JSON fitted to the target (a number in
// a string field becomes a string) and then decodes that JSON; capture
// keeps the JSON so that shape is decoded from it as well.
//
// The errors are those of the two decodes this replaces, in their order:
// the shape's ("want a YAML list of objects"), then the entries'. The
// fitted JSON can differ from the plain one in one way only: an unquoted
// .nan or .inf in a string field becomes the string "NaN", "+Inf" or
// "-Inf", where the plain conversion fails. Only when the JSON holds such
// a string is the text converted again, plainly, to tell the two apart: a
// second parse for a class with a secret called NaN.
func decodeObjects(text []byte) (shape []map[string]any, raws []rawObject, err error) {
	var fitted []byte
	capture := func(d *json.Decoder) *json.Decoder {
		var j json.RawMessage
		if d.Decode(&j) != nil {
			return d // cannot happen (the converter wrote the JSON); raws' decode fails
		}
		fitted = j
		return json.NewDecoder(bytes.NewReader(j))
	}
	rawsErr := yaml.Unmarshal(text, &raws, capture)
	if fitted == nil || hasNonFinite(fitted) {
		// fitted is nil when the conversion failed; the plain one fails
		// then too, with the error the shape's decode reported.
		if _, err := yaml.YAMLToJSON(text); err != nil {
			return nil, nil, invalidf("objects: want a YAML list of objects: error converting YAML to JSON: %v", err)
		}
		if fitted == nil {
			return nil, nil, invalidf("objects: %v", rawsErr)
		}
	}
	if err := json.NewDecoder(bytes.NewReader(fitted)).Decode(&shape); err != nil {
		return nil, nil, invalidf("objects: want a YAML list of objects: error unmarshaling JSON: while decoding JSON: %v", err)
	}
	if rawsErr != nil {
		return nil, nil, invalidf("objects: %v", rawsErr)
	}
	return shape, raws, nil
}

// hasNonFinite reports whether JSON j holds a string a non-finite YAML
// number converts to.
func hasNonFinite(j []byte) bool {
	return bytes.Contains(j, []byte(`"NaN"`)) || bytes.Contains(j, []byte(`"+Inf"`)) || bytes.Contains(j, []byte(`"-Inf"`))
}

// unknownKeys records the keys of m, the entry at loc, that are not in
// known, sorted. A key equal to a known one but for letter case is known:
// the decoder matches field names regardless of case.
func (cfg *config) unknownKeys(loc string, m map[string]any, known []string) {
	var keys []string
	for k := range m {
		if !slices.ContainsFunc(known, func(n string) bool { return strings.EqualFold(n, k) }) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg.Ignored = append(cfg.Ignored, loc+"."+k)
		cfg.Unknown = append(cfg.Unknown, unknownKey{Loc: keyLoc(loc, k), Suggest: suggest.Closest(k, known)})
	}
}

// keyLoc names key k of the entry at loc: loc.k, or loc["k"] when k is not
// a plain identifier (keys are untrusted and end up in events).
func keyLoc(loc, k string) string {
	plain := len(k) <= maxKeyShown && !strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	})
	if plain && k != "" {
		return loc + "." + k
	}
	if len(k) <= maxKeyShown {
		return fmt.Sprintf("%s[%q]", loc, k)
	}
	n := maxKeyShown
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return fmt.Sprintf("%s[%q...]", loc, k[:n])
}

const (
	// maxKeyShown bounds how much of an unknown key a message quotes.
	maxKeyShown = 64
	// maxKeyWarnings bounds the warnings (and so the pod events) of one
	// fetch; the rest are counted in one more warning.
	maxKeyWarnings = 10
)

// ReasonUnknownParameterKey is the Warning reason of an ignored key.
const ReasonUnknownParameterKey = "UnknownParameterKey"

// warnings reports cfg's ignored object keys for class ("namespace/name").
// They are built per fetch because classes with equal parameters share one
// parsed config.
func (cfg *config) warnings(class string) []provider.Warning {
	if len(cfg.Unknown) == 0 {
		return nil
	}
	ws := make([]provider.Warning, 0, min(len(cfg.Unknown), maxKeyWarnings+1))
	for i, u := range cfg.Unknown {
		if i == maxKeyWarnings {
			ws = append(ws, provider.Warning{Reason: ReasonUnknownParameterKey, Message: fmt.Sprintf(
				"SecretProviderClass %s: %d more unknown keys in objects, ignored", class, len(cfg.Unknown)-i)})
			break
		}
		msg := fmt.Sprintf("SecretProviderClass %s: %s: unknown key, ignored", class, u.Loc)
		if u.Suggest != "" {
			msg += fmt.Sprintf("; did you mean %q?", u.Suggest)
		}
		ws = append(ws, provider.Warning{Reason: ReasonUnknownParameterKey, Message: msg})
	}
	return ws
}

// maxNameLen bounds objectName (and failoverObject.objectName): a Secrets
// Manager ARN is at most 2048 bytes, an SSM name far less.
const maxNameLen = 2048

// parseObject validates entry i of the objects list and claims its files
// in owners. Every error names the entry (o.describe) and the field.
func (cfg *config) parseObject(i int, r *rawObject, owners *fileOwners) (object, error) {
	o := object{Index: i, ref: ref{Name: r.ObjectName, Version: r.ObjectVersion, Label: r.ObjectVersionLabel}}
	if o.Name == "" {
		return o, invalidf("objects[%d]: objectName: required", i)
	}
	fail := func(err error) error { return invalidf("%s: %v", o.describe(), err) }
	if !validName(o.Name) {
		return o, fail(errors.New("objectName: not a valid name or ARN"))
	}
	var err error
	if o.Type, err = resolveType(r.ObjectType, o.Name); err != nil {
		return o, fail(err)
	}
	if err := checkVersion(o.Type, o.ref); err != nil {
		return o, fail(err)
	}
	if o.Failover, err = cfg.parseFailover(&o, r); err != nil {
		return o, fail(err)
	}
	if o.Optional, err = r.Optional.value("optional"); err != nil {
		return o, fail(err)
	}

	// The file is named after the object unless objectAlias is set.
	field, alias := "objectAlias", r.ObjectAlias
	if alias == "" {
		field, alias = "objectName", o.Name
	}
	if o.Path, o.Mode, err = cfg.claimFile(field, alias, r.FilePermission, o.describe(), owners); err != nil {
		return o, fail(err)
	}

	for j := range r.JMESPath {
		e, err := cfg.parseJMES(fmt.Sprintf("%s jmesPath[%d]", o.describe(), j), &r.JMESPath[j], owners)
		if err != nil {
			return o, err
		}
		o.JMES = append(o.JMES, e)
	}
	return o, nil
}

// validName reports whether s can be sent to a store as an object name.
func validName(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) && len(s) <= maxNameLen
}

// resolveType is the type of the object called name, from objectType as
// written or else from the ARN name is; the two must agree.
func resolveType(written, name string) (objectType, error) {
	arn, isARN := parseARN(name)
	switch written {
	case "":
		if !isARN {
			return "", errors.New(`objectType: required unless objectName is an ARN; want "secretsmanager" or "ssmparameter"`)
		}
		t, ok := typeOfARN(arn.Service)
		if !ok {
			return "", fmt.Errorf("objectName is an ARN of service %q; want secretsmanager or ssm", arn.Service)
		}
		return t, nil
	case string(typeSecretsManager), string(typeSSMParameter):
		if isARN {
			if t, ok := typeOfARN(arn.Service); !ok || t != objectType(written) {
				return "", fmt.Errorf("objectType %q does not match the ARN's service %q", written, arn.Service)
			}
		}
		return objectType(written), nil
	}
	return "", fmt.Errorf(`objectType %q: want "secretsmanager" or "ssmparameter"`, written)
}

// parseFailover validates r's failoverObject, the ref that replaces o's in
// the failover region; nil when there is none.
func (cfg *config) parseFailover(o *object, r *rawObject) (*ref, error) {
	fo := r.FailoverObject
	if fo == nil {
		return nil, nil
	}
	switch {
	case cfg.FailoverRegion == "":
		return nil, errors.New("failoverObject is set but failoverRegion is not")
	case fo.ObjectName == "":
		return nil, errors.New("failoverObject.objectName: required")
	case r.ObjectAlias == "":
		// The file needs one name whichever region answers.
		return nil, errors.New("objectAlias: required when failoverObject is set")
	}
	f := ref{Name: fo.ObjectName, Version: fo.ObjectVersion, Label: fo.ObjectVersionLabel}
	if !validName(f.Name) {
		return nil, errors.New("failoverObject.objectName: not a valid name or ARN")
	}
	if farn, ok := parseARN(f.Name); ok {
		if t, ok := typeOfARN(farn.Service); !ok || t != o.Type {
			return nil, fmt.Errorf("failoverObject.objectName is an ARN of service %q, but the object is a %s", farn.Service, o.Type)
		}
	}
	if err := checkVersion(o.Type, f); err != nil {
		return nil, fmt.Errorf("failoverObject: %w", err)
	}
	if o.Type == typeSecretsManager && f.Version != "" && o.Version != "" && f.Version != o.Version {
		// Replicas keep the primary's version IDs.
		return nil, fmt.Errorf("failoverObject.objectVersion %q must match objectVersion %q", f.Version, o.Version)
	}
	return &f, nil
}

// claimFile turns the name written in field into the file's path (after
// pathTranslation) and mode, and claims the path for owner.
func (cfg *config) claimFile(field, written string, perm permission, owner string, owners *fileOwners) (string, fs.FileMode, error) {
	p := translatePath(written, cfg.Translate)
	if err := validateFileName(field, written, p); err != nil {
		return "", 0, err
	}
	mode, err := perm.mode()
	if err != nil {
		return "", 0, err
	}
	if err := owners.add(p, owner); err != nil {
		return "", 0, err
	}
	return p, mode, nil
}

// parseJMES validates one jmesPath entry, owner naming it in errors, and
// claims its file.
func (cfg *config) parseJMES(owner string, rj *rawJMES, owners *fileOwners) (jmesEntry, error) {
	fail := func(err error) error { return invalidf("%s: %v", owner, err) }
	if rj.Path == "" {
		return jmesEntry{}, fail(errors.New("path: required"))
	}
	if rj.ObjectAlias == "" {
		return jmesEntry{}, fail(errors.New("objectAlias: required"))
	}
	expr, err := compileJMES(rj.Path)
	if err != nil {
		return jmesEntry{}, fail(fmt.Errorf("path %q: not a JMESPath expression", rj.Path))
	}
	e := jmesEntry{Expr: rj.Path, expr: expr}
	if e.Path, e.Mode, err = cfg.claimFile("objectAlias", rj.ObjectAlias, rj.FilePermission, owner, owners); err != nil {
		return jmesEntry{}, fail(err)
	}
	return e, nil
}

// checkVersion validates a ref's version fields for objects of type t.
func checkVersion(t objectType, r ref) error {
	for _, f := range []struct{ name, v string }{{"objectVersion", r.Version}, {"objectVersionLabel", r.Label}} {
		if len(f.v) > 256 || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, unicode.IsControl) {
			return fmt.Errorf("%s: not a valid version", f.name)
		}
	}
	if t != typeSSMParameter {
		return nil // Secrets Manager takes VersionId and VersionStage together.
	}
	if _, isARN := parseARN(r.Name); !isARN && strings.Contains(r.Name, ":") {
		return fmt.Errorf("objectName %q: SSM parameter names can't contain ':'; use objectVersion or objectVersionLabel to select a version", r.Name)
	}
	if r.Version != "" && r.Label != "" {
		return fmt.Errorf("objectVersion %q and objectVersionLabel %q: SSM parameters take one of them, not both", r.Version, r.Label)
	}
	if r.Version != "" {
		if n, err := strconv.ParseInt(r.Version, 10, 64); err != nil || n < 1 || strconv.FormatInt(n, 10) != r.Version {
			return fmt.Errorf("objectVersion %q: SSM parameter versions are positive integers", r.Version)
		}
	}
	if r.Label != "" && !ssmLabelRE.MatchString(r.Label) {
		return fmt.Errorf("objectVersionLabel %q: not an SSM parameter label (letters, digits, '.', '-', '_'; not starting with a digit)", r.Label)
	}
	return nil
}

// compileJMES compiles a JMESPath expression; the library can panic on some
// malformed input, which is turned into an error.
func compileJMES(s string) (expr *jmespath.JMESPath, err error) {
	defer func() {
		if r := recover(); r != nil {
			expr, err = nil, fmt.Errorf("invalid expression")
		}
	}()
	return jmespath.Compile(s)
}

// resolveRegion gives a class without a region parameter the driver's
// default region def and checks the regions against each other and the
// objects' ARNs. class names the class in the error of no region at all.
func (cfg *config) resolveRegion(def, class string) error {
	if cfg.Region == "" {
		cfg.Region = def
	}
	if cfg.Region == "" {
		return invalidf("no region: set the region parameter of SecretProviderClass %s or the driver's default region", class)
	}
	if cfg.FailoverRegion == cfg.Region {
		return invalidf("failoverRegion %q: must differ from the region %q", cfg.FailoverRegion, cfg.Region)
	}
	return cfg.checkRegions(cfg.Region)
}

// checkRegions validates the ARNs of cfg's objects against the regions
// they'll be fetched from. region is the resolved primary region.
func (cfg *config) checkRegions(region string) error {
	for i := range cfg.Objects {
		o := &cfg.Objects[i]
		if a, ok := parseARN(o.Name); ok && a.Region != "" && a.Region != region {
			return invalidf("%s: the ARN names region %q, but the volume's region is %q", o.describe(), a.Region, region)
		}
		if cfg.FailoverRegion == "" {
			continue
		}
		f := o.refIn(true)
		if a, ok := parseARN(f.Name); ok && a.Region != "" && a.Region != cfg.FailoverRegion {
			if o.Failover == nil {
				return invalidf("%s: the ARN names region %q and can't be used in failoverRegion %q; set failoverObject", o.describe(), a.Region, cfg.FailoverRegion)
			}
			return invalidf("%s: failoverObject.objectName names region %q, but failoverRegion is %q", o.describe(), a.Region, cfg.FailoverRegion)
		}
	}
	return nil
}
