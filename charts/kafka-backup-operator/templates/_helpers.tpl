{{/*
Names and labels.
*/}}
{{- define "kbo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kbo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kbo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kbo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kbo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kbo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kbo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kbo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kbo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
TLS: the Secret the pods mount, the DNS names of the serving certificate, the caBundle.
*/}}
{{- define "kbo.tls.secretName" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret is required when tls.mode is existingSecret" .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "kbo.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "kbo.tls.dnsNames" -}}
{{- $svc := include "kbo.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) | toJson -}}
{{- end -}}

{{/*
The name of the cert-manager Certificate whose CA the injector copies into the caBundles.
*/}}
{{- define "kbo.tls.certificateName" -}}
{{- printf "%s-serving" (include "kbo.fullname" .) -}}
{{- end -}}

{{/*
selfSigned mode: the CA and serving certificate, made once per render and shared by every template
(memoized in .Values, which all templates of the chart share): either the ones of the existing
Secret (found with lookup on upgrade) or new ones from genCA/genSignedCert.
*/}}
{{- define "kbo.tls.selfSigned" -}}
{{- if not (hasKey .Values "kboSelfSignedMaterial") -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "kbo.tls.secretName" .) -}}
{{- $ca := dig "data" "ca.crt" "" $secret -}}
{{- $crt := dig "data" "tls.crt" "" $secret -}}
{{- $key := dig "data" "tls.key" "" $secret -}}
{{- $material := dict -}}
{{- if and $ca $crt $key -}}
{{- $material = dict "ca" (b64dec $ca) "crt" (b64dec $crt) "key" (b64dec $key) -}}
{{- else -}}
{{- $days := int .Values.tls.selfSigned.validityDays -}}
{{- $caCert := genCA (printf "%s-ca" (include "kbo.fullname" .)) $days -}}
{{- $dnsNames := include "kbo.tls.dnsNames" . | fromJsonArray -}}
{{- $serving := genSignedCert (include "kbo.fullname" .) nil $dnsNames $days $caCert -}}
{{- $material = dict "ca" $caCert.Cert "crt" $serving.Cert "key" $serving.Key -}}
{{- end -}}
{{- $_ := set .Values "kboSelfSignedMaterial" $material -}}
{{- end -}}
{{- end -}}

{{/*
The base64 caBundle for the webhook configurations, the CRDs' conversion webhook and the
APIService; empty with cert-manager, whose CA injector fills it in.
*/}}
{{- define "kbo.caBundle" -}}
{{- if eq .Values.tls.mode "selfSigned" -}}
{{- include "kbo.tls.selfSigned" . -}}
{{- .Values.kboSelfSignedMaterial.ca | b64enc -}}
{{- else if eq .Values.tls.mode "existingSecret" -}}
{{- $pem := required "tls.caBundle (the PEM CA that signed the existing Secret's tls.crt) is required when tls.mode is existingSecret" .Values.tls.caBundle -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" $pem) -}}
{{- fail "tls.caBundle must be PEM (-----BEGIN CERTIFICATE-----), not base64" -}}
{{- end -}}
{{- $pem | b64enc -}}
{{- else if ne .Values.tls.mode "certManager" -}}
{{- fail (printf "tls.mode must be selfSigned, certManager or existingSecret, not %q" .Values.tls.mode) -}}
{{- end -}}
{{- end -}}

{{/*
The generated manifests. `kafka-backup-operator manifests` writes a byte-identical copy of crds/,
webhooks/ and apiservice/ into files/ of this chart; "kbo.generated" reads one of them and fills in
only what depends on the release:
- names: the generator names the Service, ServiceAccount, webhook configurations and RBAC objects
  after "kafka-backup-operator" (its DEFAULT_SERVICE_NAME); that prefix becomes the full name;
- every service reference (webhook clientConfig, CRD conversion clientConfig, APIService spec)
  points at this release's Service and namespace, every ServiceAccount subject at its
  ServiceAccount;
- caBundle (selfSigned, existingSecret) or the cert-manager.io/inject-ca-from annotation;
- Helm's labels (added to the generated ones) and, on CRDs, helm.sh/resource-policy: keep.
Arguments: dict "ctx" $ "path" "files/...".
*/}}
{{- define "kbo.generatedServiceName" -}}
kafka-backup-operator
{{- end -}}

{{- define "kbo.generated" -}}
{{- $ctx := .ctx -}}
{{- $raw := $ctx.Files.Get .path -}}
{{- if not $raw -}}
{{- fail (printf "%s is missing from the chart: run `kafka-backup-operator manifests`" .path) -}}
{{- end -}}
{{- $obj := fromYaml $raw -}}
{{- if hasKey $obj "Error" -}}
{{- fail (printf "%s: %s" .path $obj.Error) -}}
{{- end -}}
{{- $generated := include "kbo.generatedServiceName" $ctx -}}
{{- $fullname := include "kbo.fullname" $ctx -}}
{{- $namespace := $ctx.Release.Namespace -}}
{{- $caBundle := include "kbo.caBundle" $ctx -}}
{{- $certManager := eq $ctx.Values.tls.mode "certManager" -}}
{{- $meta := $obj.metadata -}}
{{- if hasPrefix $generated $meta.name -}}
{{- $_ := set $meta "name" (printf "%s%s" $fullname (trimPrefix $generated $meta.name)) -}}
{{- end -}}
{{- $_ := set $meta "labels" (merge (include "kbo.labels" $ctx | fromYaml) (default dict $meta.labels)) -}}
{{- $annotations := default dict $meta.annotations -}}
{{- $clientConfigs := list -}}
{{- if eq $obj.kind "CustomResourceDefinition" -}}
{{- $clientConfigs = append $clientConfigs $obj.spec.conversion.webhook.clientConfig -}}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" -}}
{{- else if has $obj.kind (list "ValidatingWebhookConfiguration" "MutatingWebhookConfiguration") -}}
{{- range $obj.webhooks -}}
{{- $clientConfigs = append $clientConfigs .clientConfig -}}
{{- end -}}
{{- else if eq $obj.kind "APIService" -}}
{{- $clientConfigs = append $clientConfigs $obj.spec -}}
{{- end -}}
{{- range $clientConfigs -}}
{{- $_ := set .service "name" $fullname -}}
{{- $_ := set .service "namespace" $namespace -}}
{{- if $caBundle -}}
{{- $_ := set . "caBundle" $caBundle -}}
{{- else -}}
{{- $_ := unset . "caBundle" -}}
{{- end -}}
{{- end -}}
{{- if and $certManager $clientConfigs -}}
{{- $_ := set $annotations "cert-manager.io/inject-ca-from" (printf "%s/%s" $namespace (include "kbo.tls.certificateName" $ctx)) -}}
{{- end -}}
{{- range (default list $obj.subjects) -}}
{{- if eq .kind "ServiceAccount" -}}
{{- $_ := set . "name" (include "kbo.serviceAccountName" $ctx) -}}
{{- $_ := set . "namespace" $namespace -}}
{{- end -}}
{{- end -}}
{{- if $annotations -}}
{{- $_ := set $meta "annotations" $annotations -}}
{{- end -}}
{{- toYaml $obj -}}
{{- end -}}

{{/*
The Service port of the HTTPS server, as the generated manifests reference it (443).
*/}}
{{- define "kbo.httpsServicePort" -}}
{{- (.Files.Get "files/apiservice/apiservice.yaml" | fromYaml).spec.service.port | int -}}
{{- end -}}
