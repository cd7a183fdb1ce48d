{{/*
A quantity value as the driver's flags take it: a string as it is, a
number as an integer. Numbers from a values file arrive as floats, which
print in exponent notation from a million up (1.6777216e+07).
*/}}
{{- define "podsecrets.quantity" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ int64 . }}{{ end -}}
{{- end }}

