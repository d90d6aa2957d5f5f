// The sign-in page: through the identity provider, when the server has one (its
// `/auth/login` comes back here with a session cookie); or paste a token (or arrive
// through a `#token=…` link, which the router handles before any page is shown).

import { claimsOf, identityProviderLogin, keepToken } from './auth.js';
import { h } from './dom.js';
import { frame, say } from './page.js';

// `signedIn` shows the page the token leads to: the router's, passed in so that
// this module does not import the router that imports it.
export function renderSignIn(message, signedIn) {
  document.title = 'headcount · sign in';
  const login = identityProviderLogin();
  const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'eyJ…' });
  frame(
    [{ text: 'Sign in' }],
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'notice', role: 'alert' }, message) : null,
    login ? identityProviderPanel(login) : null,
    login ? h('h2', { class: 'token-heading' }, 'Or sign in with a token') : null,
    h(
      'form',
      {
        id: 'sign-in',
        class: 'sign-in',
        onsubmit: (ev) => {
          ev.preventDefault();
          const t = input.value.trim();
          if (!claimsOf(t)) {
            say('That is not a headcount token (a JWT: three parts separated by dots).', 'error');
            return;
          }
          keepToken(t);
          if (location.hash === '#/') signedIn();
          else location.hash = '#/';
        },
      },
      h('label', { for: 'token-input' }, 'Token'),
      input,
      h('button', { type: 'submit' }, 'Sign in'),
    ),
    h(
      'p',
      { class: 'hint' },
      'Paste an admin or tenant token. It stays in this tab (sessionStorage) and is sent only in the Authorization header. ',
      'An operator can print a link that signs in: ',
      h('code', {}, 'headcount token create --role tenant --tenant SLUG --ui'),
      '.',
    ),
  );
  if (!login) input.focus();
}

// The way in for people: back to this very address once the provider is done.
function identityProviderPanel(login) {
  const here = `${location.pathname}${location.hash || '#/'}`;
  const href = `${login}${login.includes('?') ? '&' : '?'}return_to=${encodeURIComponent(here)}`;
  return h(
    'div',
    { class: 'idp-sign-in' },
    h('a', { id: 'idp-sign-in', class: 'button-link primary', href }, 'Sign in with your identity provider'),
    h('p', { class: 'hint' }, 'Your organisation\'s account: its groups decide whether you see the provider\'s pages or a tenant\'s.'),
  );
}
