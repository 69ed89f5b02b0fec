"""What the server tells clients about its authorization: SMART configuration, OpenID
configuration, and the CapabilityStatement's `rest.security`.

- `GET [base]/.well-known/smart-configuration`
  (https://hl7.org/fhir/smart-app-launch/conformance.html#using-well-known): JSON whatever
  the Accept header, absolute URLs, the capability vocabulary of SMART 2.2.
- `GET {issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §3), and
  the JWKS (`jwks_uri`: RSA keys; id_tokens are RS256).
- `rest.security` (https://hl7.org/fhir/smart-app-launch/conformance.html#declaring-support-for-oauth2-endpoints):
  the `SMART-on-FHIR` service coding and the `oauth-uris` extension, which clients such
  as the Python fhirclient read instead of the well-known document.
"""

from __future__ import annotations

from typing import Any

from fhir_server.auth.assertions import ALGORITHMS
from fhir_server.auth.urls import AuthUrls

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-standalone-encounter",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.rs",
    "user/*.rs",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
    "patient/*.*",
    "user/*.*",
    "system/*.*",
)
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def smart_configuration(urls: AuthUrls) -> dict[str, Any]:
    """The `.well-known/smart-configuration` document."""
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "management_endpoint": urls.manage,
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "capabilities": list(CAPABILITIES),
    }


def openid_configuration(urls: AuthUrls) -> dict[str, Any]:
    """The OpenID Provider Metadata at `{issuer}/.well-known/openid-configuration`."""
    return {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "jwks_uri": urls.jwks,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
    }


def rest_security(urls: AuthUrls) -> dict[str, Any]:
    """The CapabilityStatement's `rest.security` for this authorization server."""
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {"system": SERVICE_SYSTEM, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": name, "valueUri": url}
                    for name, url in (
                        ("authorize", urls.authorize),
                        ("token", urls.token),
                        ("register", urls.register),
                        ("manage", urls.manage),
                        ("introspect", urls.introspect),
                        ("revoke", urls.revoke),
                    )
                ],
            }
        ],
    }
