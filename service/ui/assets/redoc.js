// ReDoc over the service's own spec (a file, not an inline script: the page's CSP forbids those).

// ReDoc's sidebar always shows Redocly's logo from their CDN. This page loads nothing from
// another origin, so an image pointing elsewhere never gets its src (and is never requested).
const foreign = (value) => new URL(value, location.href).origin !== location.origin;
const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function (name, value) {
  if (!(this instanceof HTMLImageElement && name.toLowerCase() === "src" && foreign(value))) {
    setAttribute.call(this, name, value);
  }
};
const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
Object.defineProperty(HTMLImageElement.prototype, "src", {
  ...src,
  set(value) { if (!foreign(value)) src.set.call(this, value); },
});

Redoc.init("/openapi.json", { disableSearch: true }, document.getElementById("redoc"));
