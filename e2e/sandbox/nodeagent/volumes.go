package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// volumeSource is where a volume lives on the host.
type volumeSource struct {
	Path string
	// ReadOnly volumes (ConfigMap, Secret, downward API, projected) are always
	// mounted read-only, as the kubelet does.
	ReadOnly bool
}

// tokenEntry is a projected ServiceAccount token and when to renew it.
type tokenEntry struct {
	Token     string
	RefreshAt time.Time
}

// tokenRefresh computes when a token that expires at exp, fetched at now, is
// renewed: at 80% of its life, and after a day at the latest.
func tokenRefresh(now, exp time.Time) time.Time {
	at := now.Add(exp.Sub(now) * 8 / 10)
	if limit := now.Add(24 * time.Hour); at.After(limit) {
		return limit
	}
	return at
}

const (
	defaultVolumeMode = 0o644
	defaultSAName     = "default"
	defaultTokenTTL   = int64(3600)
)

// volumeErrorf marks an error of a pod's volume spec (not worth retrying soon).
func volumeErrorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// syncVolumes renders every volume of the pod under dir and returns where each
// is and the earliest time a token must be renewed. It is called again for every
// change of a referenced object and when a token is due; unchanged content is
// not rewritten.
func (w *podWorker) syncVolumes(ctx context.Context, pod *corev1.Pod) (map[string]volumeSource, time.Time, error) {
	out := map[string]volumeSource{}
	var next time.Time
	src := podObjectSource{ctx: ctx, o: w.a.objects}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		var payload map[string]payloadFile
		var err error
		switch {
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, next, fmt.Errorf("volume %s: creating %s: %w", v.Name, dir, err)
			}
			_ = os.Chmod(dir, 0o777)
			out[v.Name] = volumeSource{Path: dir}
			continue
		case v.HostPath != nil:
			p, err := prepareHostPath(v.HostPath)
			if err != nil {
				return nil, next, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out[v.Name] = volumeSource{Path: p}
			continue
		case v.ConfigMap != nil:
			payload, err = configMapPayload(src, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode, v.ConfigMap.Optional)
		case v.Secret != nil:
			payload, err = secretPayload(src, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode, v.Secret.Optional)
		case v.DownwardAPI != nil:
			payload, err = w.downwardPayload(pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		case v.Projected != nil:
			var due time.Time
			payload, due, err = w.projectedPayload(ctx, src, pod, v.Name, v.Projected)
			if !due.IsZero() && (next.IsZero() || due.Before(next)) {
				next = due
			}
		default:
			return nil, next, volumeErrorf("volume %s: this volume type is not supported by the sandbox node agent (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)", v.Name)
		}
		if err != nil {
			return nil, next, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		changed, err := writeAtomic(dir, payload)
		if err != nil {
			return nil, next, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if changed {
			w.log.V(1).Info("volume updated", "volume", v.Name)
		}
		out[v.Name] = volumeSource{Path: dir, ReadOnly: true}
	}
	return out, next, nil
}

// prepareHostPath checks (or creates) a hostPath volume per its type.
func prepareHostPath(hp *corev1.HostPathVolumeSource) (string, error) {
	p := hp.Path
	t := corev1.HostPathUnset
	if hp.Type != nil {
		t = *hp.Type
	}
	st, err := os.Stat(p)
	exists := err == nil
	switch t {
	case corev1.HostPathUnset:
		return p, nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", fmt.Errorf("creating hostPath directory %s: %w", p, err)
			}
			return p, nil
		}
		if !st.IsDir() {
			return "", fmt.Errorf("hostPath %s exists and is not a directory", p)
		}
	case corev1.HostPathDirectory:
		if !exists || !st.IsDir() {
			return "", fmt.Errorf("hostPath type check failed: %s is not a directory", p)
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return "", fmt.Errorf("creating the directory of hostPath file %s: %w", p, err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return "", fmt.Errorf("creating hostPath file %s: %w", p, err)
			}
			return p, f.Close()
		}
		if st.IsDir() {
			return "", fmt.Errorf("hostPath %s exists and is a directory, not a file", p)
		}
	case corev1.HostPathFile:
		if !exists || !st.Mode().IsRegular() {
			return "", fmt.Errorf("hostPath type check failed: %s is not a file", p)
		}
	case corev1.HostPathSocket:
		if !exists || st.Mode()&fs.ModeSocket == 0 {
			return "", fmt.Errorf("hostPath type check failed: %s is not a socket file", p)
		}
	case corev1.HostPathCharDev:
		if !exists || st.Mode()&fs.ModeCharDevice == 0 {
			return "", fmt.Errorf("hostPath type check failed: %s is not a character device", p)
		}
	case corev1.HostPathBlockDev:
		if !exists || st.Mode()&fs.ModeDevice == 0 || st.Mode()&fs.ModeCharDevice != 0 {
			return "", fmt.Errorf("hostPath type check failed: %s is not a block device", p)
		}
	default:
		return "", fmt.Errorf("unknown hostPath type %q", t)
	}
	return p, nil
}

func fileMode(item, def *int32) fs.FileMode {
	switch {
	case item != nil:
		return fs.FileMode(*item)
	case def != nil:
		return fs.FileMode(*def)
	}
	return defaultVolumeMode
}

// keyedPayload maps data to files: every key, or only items (each to its path).
func keyedPayload(kind, name string, data map[string][]byte, items []corev1.KeyToPath, def *int32, opt *bool) (map[string]payloadFile, error) {
	out := map[string]payloadFile{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = payloadFile{Data: v, Mode: fileMode(nil, def)}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional(opt) {
				continue
			}
			return nil, fmt.Errorf("%s %s has no key %q", kind, name, it.Key)
		}
		out[it.Path] = payloadFile{Data: v, Mode: fileMode(it.Mode, def)}
	}
	return out, nil
}

func configMapPayload(src objectSource, ns, name string, items []corev1.KeyToPath, def *int32, opt *bool) (map[string]payloadFile, error) {
	cm, err := src.ConfigMap(ns, name)
	if err != nil {
		if isNotFound(err) && optional(opt) {
			return map[string]payloadFile{}, nil
		}
		return nil, fmt.Errorf("configMap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyedPayload("configMap", name, data, items, def, opt)
}

func secretPayload(src objectSource, ns, name string, items []corev1.KeyToPath, def *int32, opt *bool) (map[string]payloadFile, error) {
	s, err := src.Secret(ns, name)
	if err != nil {
		if isNotFound(err) && optional(opt) {
			return map[string]payloadFile{}, nil
		}
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return keyedPayload("secret", name, s.Data, items, def, opt)
}

func (w *podWorker) downwardPayload(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def *int32) (map[string]payloadFile, error) {
	out := map[string]payloadFile{}
	facts := w.facts()
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(pod, it.FieldRef.FieldPath, facts)
		case it.ResourceFieldRef != nil:
			v, err = resourceValue(pod, it.ResourceFieldRef, facts)
		default:
			err = fmt.Errorf("downwardAPI item %s has neither fieldRef nor resourceFieldRef", it.Path)
		}
		if err != nil {
			return nil, err
		}
		out[it.Path] = payloadFile{Data: []byte(v), Mode: fileMode(it.Mode, def)}
	}
	return out, nil
}

func (w *podWorker) projectedPayload(ctx context.Context, src objectSource, pod *corev1.Pod, volume string, p *corev1.ProjectedVolumeSource) (map[string]payloadFile, time.Time, error) {
	out := map[string]payloadFile{}
	var next time.Time
	merge := func(m map[string]payloadFile) {
		for k, v := range m {
			out[k] = v
		}
	}
	for i, s := range p.Sources {
		switch {
		case s.ConfigMap != nil:
			m, err := configMapPayload(src, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, p.DefaultMode, s.ConfigMap.Optional)
			if err != nil {
				return nil, next, err
			}
			merge(m)
		case s.Secret != nil:
			m, err := secretPayload(src, pod.Namespace, s.Secret.Name, s.Secret.Items, p.DefaultMode, s.Secret.Optional)
			if err != nil {
				return nil, next, err
			}
			merge(m)
		case s.DownwardAPI != nil:
			m, err := w.downwardPayload(pod, s.DownwardAPI.Items, p.DefaultMode)
			if err != nil {
				return nil, next, err
			}
			merge(m)
		case s.ServiceAccountToken != nil:
			tok, err := w.token(ctx, pod, fmt.Sprintf("%s/%d", volume, i), s.ServiceAccountToken)
			if err != nil {
				return nil, next, err
			}
			out[s.ServiceAccountToken.Path] = payloadFile{Data: []byte(tok.Token), Mode: fileMode(nil, p.DefaultMode)}
			if next.IsZero() || tok.RefreshAt.Before(next) {
				next = tok.RefreshAt
			}
		default:
			return nil, next, volumeErrorf("projected source %d: only configMap, secret, downwardAPI and serviceAccountToken are supported by the sandbox node agent", i)
		}
	}
	return out, next, nil
}

// token returns the projected token of one source, requesting a new one through
// the TokenRequest API (bound to the pod) when none is held or it is due.
func (w *podWorker) token(ctx context.Context, pod *corev1.Pod, key string, s *corev1.ServiceAccountTokenProjection) (tokenEntry, error) {
	now := time.Now()
	if t, ok := w.tokens[key]; ok && now.Before(t.RefreshAt) {
		return t, nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = defaultSAName
	}
	ttl := defaultTokenTTL
	if s.ExpirationSeconds != nil {
		ttl = *s.ExpirationSeconds
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &ttl,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if s.Audience != "" {
		req.Spec.Audiences = []string{s.Audience}
	}
	resp, err := w.a.kube.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return tokenEntry{}, fmt.Errorf("requesting a token for service account %s: %w", sa, err)
	}
	t := tokenEntry{Token: resp.Status.Token, RefreshAt: tokenRefresh(now, resp.Status.ExpirationTimestamp.Time)}
	w.tokens[key] = t
	return t, nil
}

// podFiles are the files the agent generates for every container of a pod.
type podFiles struct {
	Hosts, ResolvConf, Hostname string
}

// plannedMount is a shimMount with the host path where its mount point must
// exist, and whether it is a file.
type plannedMount struct {
	shimMount
	HostTarget string
	File       bool
}

// mountPlan lists a container's bind mounts in the order the shim applies them
// (parents before children): its volumeMounts, then /etc/hosts, /etc/resolv.conf
// and /etc/hostname unless a volumeMount already covers them. A mount point
// inside an earlier mount is created inside that mount's source.
func mountPlan(c *corev1.Container, vols map[string]volumeSource, files podFiles, env map[string]string) ([]plannedMount, error) {
	var plan []plannedMount
	targets := map[string]bool{}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %s refers to volume %q, which the pod does not define", m.MountPath, m.Name)
		}
		if !filepath.IsAbs(m.MountPath) {
			return nil, fmt.Errorf("volumeMount of %s: mountPath %q is not absolute", m.Name, m.MountPath)
		}
		src := v.Path
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, env)
		}
		if sub != "" {
			if err := validatePayloadPath(sub); err != nil {
				return nil, fmt.Errorf("volumeMount %s: subPath: %w", m.MountPath, err)
			}
			p, err := subPathSource(v, sub)
			if err != nil {
				return nil, fmt.Errorf("volumeMount %s: %w", m.MountPath, err)
			}
			src = p
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("volumeMount %s: source %s: %w", m.MountPath, src, err)
		}
		target := filepath.Clean(m.MountPath)
		targets[target] = true
		plan = append(plan, plannedMount{
			shimMount: shimMount{Source: src, Target: target, ReadOnly: m.ReadOnly || v.ReadOnly},
			File:      !st.IsDir(),
		})
	}
	for _, f := range []struct{ src, target string }{
		{files.Hosts, "/etc/hosts"}, {files.ResolvConf, "/etc/resolv.conf"}, {files.Hostname, "/etc/hostname"},
	} {
		if f.src == "" || targets[f.target] {
			continue
		}
		plan = append(plan, plannedMount{shimMount: shimMount{Source: f.src, Target: f.target}, File: true})
	}
	sort.SliceStable(plan, func(i, j int) bool {
		return strings.Count(plan[i].Target, "/") < strings.Count(plan[j].Target, "/")
	})
	for i := range plan {
		plan[i].HostTarget = plan[i].Target
		// The innermost earlier mount whose target holds this one.
		best := -1
		for j := 0; j < i; j++ {
			if within(plan[i].Target, plan[j].Target) && (best < 0 || len(plan[j].Target) > len(plan[best].Target)) {
				best = j
			}
		}
		if best >= 0 {
			rel, _ := filepath.Rel(plan[best].Target, plan[i].Target)
			plan[i].HostTarget = filepath.Join(plan[best].Source, rel)
		}
	}
	return plan, nil
}

func within(p, dir string) bool {
	return dir == "/" || strings.HasPrefix(p, dir+"/")
}

// subPathSource resolves a subPath inside a volume, refusing links that leave
// it, and creates it (as a directory) in writable volumes when missing.
func subPathSource(v volumeSource, sub string) (string, error) {
	root, err := filepath.EvalSymlinks(v.Path)
	if err != nil {
		return "", fmt.Errorf("resolving volume %s: %w", v.Path, err)
	}
	p := filepath.Join(root, sub)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) && !v.ReadOnly {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("creating subPath %s: %w", sub, err)
		}
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("resolving subPath %s: %w", sub, err)
	}
	if resolved != root && !strings.HasPrefix(resolved, root+"/") {
		return "", fmt.Errorf("subPath %s leaves its volume", sub)
	}
	return resolved, nil
}
