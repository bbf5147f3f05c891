{{- define "rspp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rspp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "rspp.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rspp.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "rspp.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ .ref.key }}
{{- end -}}

{{- define "rspp.controlPlaneURL" -}}
{{ if .Values.tls.enabled }}https{{ else }}http{{ end }}://{{ include "rspp.fullname" . }}-controlplane:{{ .Values.controlPlane.port }}
{{- end -}}

{{- define "rspp.tlsEnv" -}}
{{- $dir := .root.Values.tls.mountPath -}}
{{- range $env, $file := .files }}
- name: {{ $env }}
  value: {{ printf "%s/%s" $dir $file | quote }}
{{- end }}
{{- end -}}

{{- define "rspp.tlsVolume" -}}
volumeMounts:
  - name: tls
    mountPath: {{ .root.Values.tls.mountPath }}
    readOnly: true
{{- end -}}

{{- define "rspp.probe" -}}
{{- if .root.Values.tls.enabled -}}
tcpSocket: {port: http}
{{- else -}}
httpGet: {path: {{ .path }}, port: http}
{{- end -}}
{{- end -}}

{{- define "rspp.terminationGrace" -}}
{{ add .Values.runtime.preStopSeconds .Values.runtime.drainDeadlineSeconds .Values.runtime.terminationMarginSeconds }}
{{- end -}}
