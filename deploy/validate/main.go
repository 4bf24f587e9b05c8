// Command validate decodes Kubernetes manifests strictly with Kubernetes' own Go types, the way
// the API server does for `kubectl apply --validate=strict`: an unknown or misspelled field, a
// field of the wrong type, a duplicate key or a kind it does not know is an error. KEDA's
// ScaledObject and TriggerAuthentication and the Prometheus operator's objects are decoded with
// those projects' own types; a ScaledObject's authenticationRef must name a TriggerAuthentication
// of the same stream.
//
//	go run . FILE...                        every document of every file (YAML streams)
//	go run . -same-rules RULES PROMRULE     also: the plain rules file holds the same groups as
//	                                        the PrometheusRule (one source of alerts, two forms)
//
// It prints one line per object and exits 1 at the first file with a problem, listing them all.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds maps apiVersion/kind to a constructor of the typed object.
var kinds = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return &kedav1alpha1.ScaledObject{} },
	"keda.sh/v1alpha1/TriggerAuthentication":  func() any { return &kedav1alpha1.TriggerAuthentication{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
}

// strict decodes one YAML document into v: YAML → JSON refusing duplicate keys, then JSON →
// the type with sigs.k8s.io/json (case-sensitive field names, unlike encoding/json) refusing
// unknown and duplicate fields — apimachinery's strict decoding.
func strict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// documents splits a YAML stream, skipping empty documents.
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// checkMeta applies the API server's rules for names and labels.
func checkMeta(m *metav1.ObjectMeta) []string {
	var problems []string
	for _, p := range validation.IsDNS1123Subdomain(m.Name) {
		problems = append(problems, fmt.Sprintf("metadata.name %q: %s", m.Name, p))
	}
	if m.Namespace != "" {
		for _, p := range validation.IsDNS1123Label(m.Namespace) {
			problems = append(problems, fmt.Sprintf("metadata.namespace %q: %s", m.Namespace, p))
		}
	}
	problems = append(problems, checkLabels("metadata.labels", m.Labels)...)
	return problems
}

func checkLabels(where string, l map[string]string) []string {
	var problems []string
	for k, v := range l {
		for _, p := range validation.IsQualifiedName(k) {
			problems = append(problems, fmt.Sprintf("%s key %q: %s", where, k, p))
		}
		for _, p := range validation.IsValidLabelValue(v) {
			problems = append(problems, fmt.Sprintf("%s[%q] value %q: %s", where, k, v, p))
		}
	}
	return problems
}

// selects says whether a selector picks the pod template's labels (else the controller owns no pod).
func selects(where string, sel *metav1.LabelSelector, podLabels map[string]string) []string {
	if sel == nil {
		return []string{where + ": no selector"}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", where, err)}
	}
	if s.Empty() || !s.Matches(labels.Set(podLabels)) {
		return []string{fmt.Sprintf("%s %v does not select the pod template's labels %v", where, s, podLabels)}
	}
	return nil
}

// semantic: checks beyond the schema that a misconfiguration would otherwise only show on a cluster.
func semantic(obj any) []string {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		p := selects("spec.selector", o.Spec.Selector, o.Spec.Template.Labels)
		p = append(p, checkLabels("spec.template.metadata.labels", o.Spec.Template.Labels)...)
		for _, c := range o.Spec.Template.Spec.Containers {
			if c.Image == "" {
				p = append(p, fmt.Sprintf("container %q: no image", c.Name))
			}
		}
		return p
	case *policyv1.PodDisruptionBudget:
		if o.Spec.Selector == nil || len(o.Spec.Selector.MatchLabels) == 0 {
			return []string{"spec.selector: empty (it would cover every pod of the namespace)"}
		}
	case *kedav1alpha1.ScaledObject:
		if err := kedav1alpha1.ValidateTriggers(o.Spec.Triggers); err != nil {
			return []string{err.Error()}
		}
	case *kedav1alpha1.TriggerAuthentication:
		var p []string
		seen := map[string]bool{}
		for i, r := range o.Spec.SecretTargetRef {
			if r.Parameter == "" || r.Name == "" || r.Key == "" {
				p = append(p, fmt.Sprintf("secretTargetRef[%d]: parameter, name and key are all required", i))
			}
			if seen[r.Parameter] {
				p = append(p, fmt.Sprintf("secretTargetRef[%d]: parameter %q given twice", i, r.Parameter))
			}
			seen[r.Parameter] = true
		}
		return p
	case *monitoringv1.PrometheusRule:
		var p []string
		for _, g := range o.Spec.Groups {
			for _, r := range g.Rules {
				if (r.Alert == "") == (r.Record == "") {
					p = append(p, fmt.Sprintf("group %q: a rule needs exactly one of alert and record", g.Name))
				}
				if r.Expr.String() == "" {
					p = append(p, fmt.Sprintf("group %q rule %q: empty expr", g.Name, r.Alert+r.Record))
				}
			}
		}
		return p
	}
	return nil
}

// validateFile prints each object and returns every problem of the file.
func validateFile(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	docs, err := documents(data)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	if len(docs) == 0 {
		return []string{path + ": no document"}
	}
	var problems []string
	// TriggerAuthentications of the stream, and the ScaledObjects' references to check against them.
	auths := map[string]bool{}
	type authRef struct{ from, namespace, name string }
	var refs []authRef
	for i, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			problems = append(problems, fmt.Sprintf("%s document %d: %v", path, i+1, err))
			continue
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		newObj, ok := kinds[gvk]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s document %d: unknown kind %q", path, i+1, gvk))
			continue
		}
		obj := newObj()
		if err := strict(doc, obj); err != nil {
			problems = append(problems, fmt.Sprintf("%s document %d (%s): %v", path, i+1, gvk, err))
			continue
		}
		meta := reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Addr().Interface().(*metav1.ObjectMeta)
		var found []string
		found = append(found, checkMeta(meta)...)
		found = append(found, semantic(obj)...)
		for _, p := range found {
			problems = append(problems, fmt.Sprintf("%s %s %q: %s", path, tm.Kind, meta.Name, p))
		}
		switch o := obj.(type) {
		case *kedav1alpha1.TriggerAuthentication:
			auths[meta.Namespace+"/"+meta.Name] = true
		case *kedav1alpha1.ScaledObject:
			for _, t := range o.Spec.Triggers {
				// A ClusterTriggerAuthentication lives outside the stream.
				if t.AuthenticationRef != nil && t.AuthenticationRef.Kind != "ClusterTriggerAuthentication" {
					refs = append(refs, authRef{meta.Name, meta.Namespace, t.AuthenticationRef.Name})
				}
			}
		}
		fmt.Printf("ok %s %s/%s\n", path, tm.Kind, meta.Name)
	}
	for _, r := range refs {
		if !auths[r.namespace+"/"+r.name] {
			problems = append(problems, fmt.Sprintf("%s ScaledObject %q: authenticationRef %q is no TriggerAuthentication of this file (namespace %q)", path, r.from, r.name, r.namespace))
		}
	}
	return problems
}

// sameRules: the plain rules file (what `promtool` and a plain Prometheus load) and the
// PrometheusRule must hold the same groups.
func sameRules(rulesPath, promRulePath string) []string {
	data, err := os.ReadFile(rulesPath)
	if err != nil {
		return []string{err.Error()}
	}
	var plain struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := strict(data, &plain); err != nil {
		return []string{fmt.Sprintf("%s: %v", rulesPath, err)}
	}
	data, err = os.ReadFile(promRulePath)
	if err != nil {
		return []string{err.Error()}
	}
	var pr monitoringv1.PrometheusRule
	if err := strict(data, &pr); err != nil {
		return []string{fmt.Sprintf("%s: %v", promRulePath, err)}
	}
	if len(plain.Groups) == 0 {
		return []string{rulesPath + ": no groups"}
	}
	if !reflect.DeepEqual(plain.Groups, pr.Spec.Groups) {
		return []string{fmt.Sprintf("%s and %s hold different rules: edit both alike", rulesPath, promRulePath)}
	}
	fmt.Printf("ok %s = spec of %s (%d groups)\n", rulesPath, promRulePath, len(plain.Groups))
	return nil
}

func main() {
	same := flag.Bool("same-rules", false, "the first two files are a plain rules file and the PrometheusRule holding the same groups")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: validate [-same-rules RULES PROMETHEUSRULE] FILE...")
		os.Exit(2)
	}
	var problems []string
	if *same {
		if len(files) < 2 {
			fmt.Fprintln(os.Stderr, "-same-rules needs the rules file and the PrometheusRule file")
			os.Exit(2)
		}
		problems = append(problems, sameRules(files[0], files[1])...)
		files = files[1:]
	}
	for _, f := range files {
		problems = append(problems, validateFile(f)...)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "invalid:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
