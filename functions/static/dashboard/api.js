// Calls to the API: URLs relative to the page's <base>, the bearer token from sessionStorage.
"use strict";
window.Dash = window.Dash || {};

(function (Dash) {
  const TOKEN_KEY = "pipeline-api-token";

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function describe(body, status) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    return `HTTP ${status}`;
  }

  const listeners = new Set();

  const api = {
    ApiError,
    url(path) {
      return new URL(path, document.baseURI).href;
    },
    token() {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    },
    setToken(token) {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    },
    headers(extra) {
      const headers = Object.assign({}, extra || {});
      const token = api.token();
      if (token) headers.Authorization = `Bearer ${token}`;
      return headers;
    },
    // Called with every 401, so the page can ask for the token.
    onUnauthorized(listener) {
      listeners.add(listener);
    },
    async request(path, options) {
      const opts = Object.assign({ cache: "no-store" }, options || {});
      opts.headers = api.headers(opts.headers);
      const response = await fetch(api.url(path), opts);
      if (response.status === 401) listeners.forEach((listener) => listener());
      const text = await response.text();
      let body = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch (error) {
        body = null;
      }
      if (!response.ok) throw new ApiError(response.status, describe(body, response.status));
      return { body, headers: response.headers };
    },
    async get(path) {
      return (await api.request(path)).body;
    },
    async post(path, payload) {
      const options = { method: "POST" };
      if (payload !== undefined) {
        options.body = JSON.stringify(payload);
        options.headers = { "Content-Type": "application/json" };
      }
      return (await api.request(path, options)).body;
    },
  };

  Dash.api = api;
})(window.Dash);
