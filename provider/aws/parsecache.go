package aws

import (
	"sort"
	"strconv"
	"strings"
	"sync"
)

// maxParsedClasses bounds the parse cache. Far more classes than a node
// mounts at once; when full the cache starts over rather than tracking use.
const maxParsedClasses = 512

// parseCache remembers parsed parameters: every pod of a Deployment mounts
// the same class, and reparsing its objects YAML was a quarter of the CPU of
// a publish. A parsed config is never modified after parsing, so one value
// is shared by concurrent fetches.
type parseCache struct {
	// region is the provider's default region. It is fixed per Provider,
	// so a cached config holds the region it resolved to, checked once
	// per class rather than in every Fetch.
	region string

	mu      sync.Mutex
	configs map[string]*config
}

// get returns the parsed form of params, its region resolved and checked,
// parsing on a miss. class names the class in the error of a class without
// a region, and only there: errors are not cached (a broken class costs a
// parse per attempt, which is fine), while a config is shared by every
// class with equal parameters.
func (c *parseCache) get(params map[string]string, class string) (*config, error) {
	key := cacheKey(params)
	c.mu.Lock()
	cfg, ok := c.configs[key]
	c.mu.Unlock()
	if ok {
		return cfg, nil
	}
	cfg, err := parseParameters(params)
	if err != nil {
		return nil, err
	}
	if err := cfg.resolveRegion(c.region, class); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.configs == nil || len(c.configs) >= maxParsedClasses {
		c.configs = make(map[string]*config)
	}
	c.configs[key] = cfg
	c.mu.Unlock()
	return cfg, nil
}

// cacheKey encodes params unambiguously: sorted, each key and value prefixed
// by its length.
func cacheKey(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, s := range []string{k, params[k]} {
			b.WriteString(strconv.Itoa(len(s)))
			b.WriteByte(':')
			b.WriteString(s)
		}
	}
	return b.String()
}
