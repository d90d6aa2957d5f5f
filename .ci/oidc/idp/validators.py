"""Claims of the test provider, and the two users whose ID tokens are wrong on purpose."""
from oauth2_provider.oauth2_validators import OAuth2Validator

# Users whose ID token carries a replaced claim, still signed with the real key:
# a relying party must refuse them.
WRONG_AUDIENCE_USER = "wrong-audience"
WRONG_AUDIENCE = "someone-else"
OTHER_ISSUER_USER = "other-issuer"
OTHER_ISSUER_SUFFIX = "-other"


def _groups(request):
    return sorted(request.user.groups.values_list("name", flat=True))


class HeadcountValidator(OAuth2Validator):
    # `groups` comes with `openid` alone; the others follow the standard scopes.
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "groups": "openid",
    }

    def get_additional_claims(self):
        # The request-free form: DOT then lists these names in the discovery
        # document's claims_supported.
        return {
            "email": lambda r: r.user.email,
            "email_verified": lambda r: bool(r.user.email),
            "name": lambda r: r.user.get_full_name() or r.user.get_username(),
            "preferred_username": lambda r: r.user.get_username(),
            "groups": _groups,
        }

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expires = super().get_id_token_dictionary(token, token_handler, request)
        username = request.user.get_username()
        # finalize_id_token merges these claims over oauthlib's (which set aud),
        # then signs the result.
        if username == WRONG_AUDIENCE_USER:
            claims["aud"] = WRONG_AUDIENCE
        elif username == OTHER_ISSUER_USER:
            claims["iss"] = claims["iss"] + OTHER_ISSUER_SUFFIX
        return claims, expires
