package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Recorder wraps an http.Handler and records the interval each request spent
// in it, so the harness can tell how long the driver waited on that server
// during a publish. It also counts requests by a caller-chosen key.
type Recorder struct {
	next http.Handler
	key  func(*http.Request) string

	mu     sync.Mutex
	ivs    []Interval
	counts map[string]int
}

// NewRecorder wraps next; key names a request for the counters (nil counts
// every request under "").
func NewRecorder(next http.Handler, key func(*http.Request) string) *Recorder {
	if key == nil {
		key = func(*http.Request) string { return "" }
	}
	return &Recorder{next: next, key: key, counts: map[string]int{}}
}

// ServeHTTP implements http.Handler. The interval ends when the wrapped
// handler returns, before net/http flushes the last bytes of the response,
// so it is recorded before the client can observe the response.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r.next.ServeHTTP(w, req)
	end := time.Now()
	k := r.key(req)
	r.mu.Lock()
	r.ivs = append(r.ivs, Interval{start, end})
	r.counts[k]++
	r.mu.Unlock()
}

// Busy returns the union of the recorded request intervals within
// [from, to).
func (r *Recorder) Busy(from, to time.Time) time.Duration {
	r.mu.Lock()
	ivs := make([]Interval, 0, 64)
	for _, iv := range r.ivs {
		if iv.End.After(from) && iv.Start.Before(to) {
			ivs = append(ivs, iv)
		}
	}
	r.mu.Unlock()
	return UnionWithin(ivs, from, to)
}

// Reset forgets the recorded intervals and zeroes the counters.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.ivs = r.ivs[:0]
	clear(r.counts)
	r.mu.Unlock()
}

// Counts returns a snapshot of the request counters.
func (r *Recorder) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}

// Total returns the number of requests counted since the last Reset.
func (r *Recorder) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.counts {
		n += v
	}
	return n
}

// Kube API request kinds, the keys of the fake API server's counters.
const (
	apiClass          = "get secretproviderclass"
	apiServiceAccount = "get serviceaccount"
	apiNode           = "get node"
	apiEvent          = "write event"
	apiPod            = "get pod"
	apiRecordGet      = "get secretversionrecord"
	apiRecordCreate   = "create secretversionrecord"
	apiOther          = "other (404)"
)

// KubeAPI is a minimal Kubernetes API server answering only the requests
// the driver makes: GETs of SecretProviderClasses, ServiceAccounts, Nodes
// and Pods (those set with SetPod), event writes (accepted, not kept), and
// GET and create of SecretVersionRecords (kept in memory; create answers
// 409 AlreadyExists for a name it has). It serves plain JSON without
// authentication.
type KubeAPI struct {
	// RoleARN is the eks.amazonaws.com/role-arn annotation of every
	// ServiceAccount of namespace SANamespace: any name exists there, so
	// each cold-cache mount can use a service account never seen before.
	RoleARN     string
	SANamespace string // see RoleARN

	mu      sync.RWMutex
	classes map[string][]byte // "ns/name" -> JSON
	pods    map[string][]byte // "ns/name" -> JSON
	records map[string][]byte // "ns/name" -> JSON, as created
	rv      int               // the records' last resourceVersion
}

// SetClass stores a SecretProviderClass of provider aws with parameters.
func (k *KubeAPI) SetClass(namespace, name string, parameters map[string]string) {
	k.setClass(namespace, name, map[string]any{"name": name, "namespace": namespace, "uid": "class-" + name, "resourceVersion": "1"},
		map[string]any{"provider": "aws", "parameters": parameters})
}

// SetRotatingClass stores a SecretProviderClass like SetClass whose volumes
// look for new versions every pollInterval (spec.rotation.pollInterval), at
// metadata.generation 1.
func (k *KubeAPI) SetRotatingClass(namespace, name string, parameters map[string]string, pollInterval time.Duration) {
	k.setClass(namespace, name, map[string]any{"name": name, "namespace": namespace, "uid": "class-" + name, "resourceVersion": "1", "generation": 1},
		map[string]any{"provider": "aws", "parameters": parameters, "rotation": map[string]any{"pollInterval": pollInterval.String()}})
}

// SetRevisionClass stores a SecretProviderClass like SetClass whose pods
// mount the versions of their workload revision (spec.versionPolicy:
// Revision).
func (k *KubeAPI) SetRevisionClass(namespace, name string, parameters map[string]string) {
	k.setClass(namespace, name, map[string]any{"name": name, "namespace": namespace, "uid": "class-" + name, "resourceVersion": "1"},
		map[string]any{"provider": "aws", "parameters": parameters, "versionPolicy": "Revision"})
}

// Owner is the controller of a pod: a Deployment's ReplicaSet here.
type Owner struct {
	APIVersion, Kind, Name, UID string
}

// SetPod stores pod namespace/name with uid, controlled by owner (nil: no
// controller), for the driver's GET of a pod of a Revision class.
func (k *KubeAPI) SetPod(namespace, name, uid string, owner *Owner) {
	meta := map[string]any{"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1"}
	if owner != nil {
		meta["ownerReferences"] = []any{map[string]any{"apiVersion": owner.APIVersion, "kind": owner.Kind, "name": owner.Name,
			"uid": owner.UID, "controller": true, "blockOwnerDeletion": true}}
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta})
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pods == nil {
		k.pods = map[string][]byte{}
	}
	k.pods[namespace+"/"+name] = b
}

// Records returns how many SecretVersionRecords were created.
func (k *KubeAPI) Records() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.records)
}

func (k *KubeAPI) setClass(namespace, name string, metadata, spec map[string]any) {
	b, err := json.Marshal(map[string]any{
		"apiVersion": "podsecrets.dev/v1",
		"kind":       "SecretProviderClass",
		"metadata":   metadata,
		"spec":       spec,
	})
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.classes == nil {
		k.classes = map[string][]byte{}
	}
	k.classes[namespace+"/"+name] = b
}

// apiKind classifies a request for the counters.
func apiKind(r *http.Request) string {
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(p) >= 5 && len(p) <= 6 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces" && p[4] == "events" &&
		(r.Method == http.MethodPost && len(p) == 5 || r.Method == http.MethodPatch && len(p) == 6):
		return apiEvent
	case r.Method == http.MethodPost && len(p) == 6 && p[0] == "apis" && p[1] == "podsecrets.dev" && p[2] == "v1" && p[3] == "namespaces" && p[5] == "secretversionrecords":
		return apiRecordCreate
	case r.Method != http.MethodGet:
	case len(p) == 7 && p[0] == "apis" && p[1] == "podsecrets.dev" && p[2] == "v1" && p[3] == "namespaces" && p[5] == "secretversionrecords":
		return apiRecordGet
	case len(p) == 6 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces" && p[4] == "pods":
		return apiPod
	case len(p) == 7 && p[0] == "apis" && p[1] == "podsecrets.dev" && p[2] == "v1" && p[3] == "namespaces" && p[5] == "secretproviderclasses":
		return apiClass
	case len(p) == 6 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces" && p[4] == "serviceaccounts":
		return apiServiceAccount
	case len(p) == 4 && p[0] == "api" && p[1] == "v1" && p[2] == "nodes":
		return apiNode
	}
	return apiOther
}

// ServeHTTP implements http.Handler.
func (k *KubeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch apiKind(r) {
	case apiClass:
		k.mu.RLock()
		b, ok := k.classes[p[4]+"/"+p[6]]
		k.mu.RUnlock()
		if !ok {
			notFound(w, "secretproviderclasses.podsecrets.dev", p[6])
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case apiServiceAccount:
		if p[3] != k.SANamespace {
			notFound(w, "serviceaccounts", p[5])
			return
		}
		writeObject(w, map[string]any{
			"apiVersion": "v1",
			"kind":       "ServiceAccount",
			"metadata": map[string]any{
				"name": p[5], "namespace": p[3], "uid": "sa-" + p[5], "resourceVersion": "1",
				"annotations": map[string]string{"eks.amazonaws.com/role-arn": k.RoleARN},
			},
		})
	case apiEvent:
		// Accepted and not kept: the driver's events (a rotation's
		// SecretsRotated, warnings) are counted, not stored.
		b, err := io.ReadAll(r.Body)
		if err != nil || r.Method == http.MethodPatch {
			b, _ = json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Event", "metadata": map[string]any{"name": p[5], "namespace": p[3]}})
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		w.Write(b)
	case apiPod:
		k.serveStored(w, &k.pods, p[3], p[5], "pods")
	case apiRecordGet:
		k.serveStored(w, &k.records, p[4], p[6], "secretversionrecords.podsecrets.dev")
	case apiRecordCreate:
		k.createRecord(w, r, p[4])
	case apiNode:
		writeObject(w, map[string]any{
			"apiVersion": "v1",
			"kind":       "Node",
			"metadata": map[string]any{
				"name": p[3], "uid": "node-" + p[3], "resourceVersion": "1",
				"labels": map[string]string{"topology.kubernetes.io/region": "us-east-1"},
			},
		})
	default:
		notFound(w, "", r.URL.Path)
	}
}

// serveStored answers a GET of namespace/name from *objects (read under
// k.mu: the maps are made on first use), or 404.
func (k *KubeAPI) serveStored(w http.ResponseWriter, objects *map[string][]byte, namespace, name, resource string) {
	k.mu.RLock()
	b, ok := (*objects)[namespace+"/"+name]
	k.mu.RUnlock()
	if !ok {
		notFound(w, resource, name)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// createRecord stores the posted SecretVersionRecord of namespace ns, as
// the API server would: with a uid, resourceVersion and creation time, or
// 409 AlreadyExists when one of its name exists.
func (k *KubeAPI) createRecord(w http.ResponseWriter, r *http.Request, ns string) {
	var obj map[string]any
	if err := json.NewDecoder(r.Body).Decode(&obj); err != nil {
		status(w, http.StatusBadRequest, "BadRequest", "", "", err.Error())
		return
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name == "" || (meta["namespace"] != nil && meta["namespace"] != ns) {
		status(w, http.StatusBadRequest, "BadRequest", "", name, "metadata.name missing or metadata.namespace not the request's")
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.records[ns+"/"+name]; ok {
		status(w, http.StatusConflict, "AlreadyExists", "secretversionrecords.podsecrets.dev", name,
			fmt.Sprintf("secretversionrecords.podsecrets.dev %q already exists", name))
		return
	}
	k.rv++
	meta["namespace"] = ns
	meta["uid"] = fmt.Sprintf("record-%d", k.rv)
	meta["resourceVersion"] = fmt.Sprint(k.rv)
	meta["creationTimestamp"] = time.Now().UTC().Format(time.RFC3339)
	b, err := json.Marshal(obj)
	if err != nil {
		status(w, http.StatusInternalServerError, "InternalError", "", name, err.Error())
		return
	}
	if k.records == nil {
		k.records = map[string][]byte{}
	}
	k.records[ns+"/"+name] = b
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(b)
}

func writeObject(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// notFound answers 404 with a metav1.Status, as the API server does.
func notFound(w http.ResponseWriter, kind, name string) {
	status(w, http.StatusNotFound, "NotFound", kind, name, fmt.Sprintf("%s %q not found", kind, name))
}

// status answers code with a failed metav1.Status of reason.
func status(w http.ResponseWriter, code int, reason, kind, name, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "reason": reason, "code": code,
		"message": message,
		"details": map[string]any{"name": name, "kind": kind},
	})
}
