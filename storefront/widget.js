/* loyaltysms storefront widget: SMS sign-up with the brand's disclosure, and for a signed-in
 * customer (data-customer, data-ts, data-signature from the store's server) their points,
 * tier progress and rewards, which they can redeem. No dependencies; drawn in a shadow root so
 * the store's styles and the widget's don't touch. */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.dataset.key) {
    return;
  }
  var data = script.dataset;
  var base = new URL(script.src).origin + "/widget/v1/" + encodeURIComponent(data.key);
  var signed = data.customer && data.ts && data.signature;
  var who = signed ? { customer: data.customer, ts: data.ts, signature: data.signature } : {};

  var host = document.querySelector("[data-loyaltysms-widget]");
  if (!host) {
    host = document.createElement("div");
    script.parentNode.insertBefore(host, script.nextSibling);
  }
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;

  var STYLE =
    ":host{all:initial;display:block;font:16px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1c1f26}" +
    ".lsw{border:1px solid #d9dde5;border-radius:12px;padding:1rem 1.25rem;max-width:32rem;background:#fff}" +
    "h2{font-size:1.2rem;margin:0 0 .5rem}h3{font-size:1rem;margin:1rem 0 .5rem}" +
    ".big{font-size:1.6rem;font-weight:700}progress{width:100%;height:.75rem}" +
    "ul{list-style:none;margin:0;padding:0}li{display:flex;justify-content:space-between;gap:.5rem;align-items:center;padding:.35rem 0;border-top:1px solid #eef0f4}" +
    "label{display:block;font-weight:600;margin:.5rem 0 .25rem}input[type=tel]{font:inherit;padding:.45rem .6rem;border:1px solid #98a2b3;border-radius:8px;width:100%;box-sizing:border-box}" +
    ".consent{display:flex;gap:.5rem;align-items:flex-start;font-weight:400;font-size:.85rem;color:#4f5665}" +
    "button{font:inherit;padding:.45rem .9rem;border-radius:8px;border:1px solid #5b3cc4;background:#5b3cc4;color:#fff;cursor:pointer}" +
    "button[disabled]{opacity:.55;cursor:not-allowed}button.quiet{background:#fff;color:#5b3cc4}" +
    ":focus-visible{outline:3px solid #5b3cc4;outline-offset:2px}" +
    ".status{min-height:1.4em;margin:.5rem 0 0}.error{color:#b42318}.ok{color:#067647}code{font-weight:700}";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") {
        node.textContent = attrs[name];
      } else {
        node.setAttribute(name, attrs[name]);
      }
    });
    (children || []).forEach(function (child) {
      if (child) {
        node.appendChild(child);
      }
    });
    return node;
  }

  function api(path, options) {
    return fetch(base + path, options || {}).then(function (response) {
      return response.json().then(
        function (body) {
          return { ok: response.ok, status: response.status, body: body };
        },
        function () {
          return { ok: response.ok, status: response.status, body: {} };
        }
      );
    });
  }

  function post(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  function problem(result) {
    var body = result.body || {};
    var fields = body.errors || {};
    var first = Object.keys(fields).map(function (name) {
      return [].concat(fields[name])[0];
    })[0];
    return first || body.detail || "Something went wrong. Please try again.";
  }

  function say(node, text, kind) {
    node.textContent = text;
    node.className = "status " + (kind || "");
  }

  var box = el("section", { class: "lsw", "aria-live": "polite" });
  root.appendChild(el("style", { text: STYLE }));
  root.appendChild(box);

  function memberPart(config, member) {
    var points = config.program.points_name;
    var part = el("div", {}, [
      el("p", {}, [
        document.createTextNode((member.first_name ? member.first_name + ", you" : "You") + " have "),
        el("span", { class: "big", "data-balance": "", text: String(member.points_balance) }),
        document.createTextNode(" " + points + (member.points_pending ? " (" + member.points_pending + " on the way)" : "")),
      ]),
    ]);
    if (member.tier || member.next_tier) {
      var line = member.tier ? "Tier: " + member.tier.name : "No tier yet";
      var next = member.next_tier;
      if (next && next.points_needed !== null) {
        line += ". " + next.points_needed + " more " + points + " to " + next.name + ".";
      } else if (next && next.spend_needed !== null) {
        line += ". Spend " + next.spend_needed + " more to reach " + next.name + ".";
      }
      part.appendChild(el("p", { text: line }));
    }
    var status = el("p", { class: "status", role: "status" });
    var list = el("ul", { "aria-label": "Rewards" });
    member.rewards.forEach(function (reward) {
      var button = el("button", { type: "button", class: "quiet", text: "Redeem" });
      button.setAttribute("aria-label", "Redeem " + reward.name + " for " + reward.points_cost + " " + points);
      if (!reward.affordable) {
        button.disabled = true;
      }
      button.addEventListener("click", function () {
        button.disabled = true;
        say(status, "Redeeming " + reward.name + "…");
        post("/redeem", Object.assign({ reward_id: reward.id }, who)).then(function (result) {
          if (!result.ok) {
            say(status, problem(result), "error");
            button.disabled = false;
            return;
          }
          load("Your code for " + result.body.reward + ": " + result.body.code);
        });
      });
      list.appendChild(
        el("li", {}, [el("span", { text: reward.name + " · " + reward.points_cost + " " + points }), button])
      );
    });
    part.appendChild(el("h3", { text: "Rewards" }));
    part.appendChild(member.rewards.length ? list : el("p", { text: "No rewards to choose from yet." }));
    part.appendChild(status);
    if (member.redemptions.length) {
      var codes = el("ul", { "aria-label": "Your reward codes" });
      member.redemptions.forEach(function (r) {
        codes.appendChild(el("li", {}, [el("span", { text: r.reward }), el("code", { text: r.code })]));
      });
      part.appendChild(el("h3", { text: "Your codes" }));
      part.appendChild(codes);
    }
    return part;
  }

  function signUpPart(config) {
    var id = "lsw-" + Math.random().toString(36).slice(2);
    var phone = el("input", { type: "tel", id: id + "-phone", name: "phone", autocomplete: "tel", required: "" });
    var agree = el("input", { type: "checkbox", id: id + "-agree", name: "consent" });
    var status = el("p", { class: "status", role: "status" });
    var button = el("button", { type: "submit", text: "Text me" });
    var consent = el("label", { class: "consent", for: id + "-agree" }, [
      agree,
      el("span", { text: config.disclosure.text }),
    ]);
    var links = [];
    if (config.disclosure.terms_url) {
      links.push(el("a", { href: config.disclosure.terms_url, target: "_blank", rel: "noopener", text: "Terms" }));
    }
    if (config.disclosure.privacy_url) {
      links.push(el("a", { href: config.disclosure.privacy_url, target: "_blank", rel: "noopener", text: "Privacy" }));
    }
    var form = el("form", { novalidate: "" }, [
      el("h3", { text: "Get texts from " + config.brand }),
      el("label", { for: id + "-phone", text: "Mobile number" }),
      phone,
      consent,
      links.length ? el("p", {}, links.reduce(function (all, link, i) {
        return i ? all.concat([document.createTextNode(" · "), link]) : [link];
      }, [])) : null,
      button,
      status,
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      say(status, "Sending…");
      post(
        "/subscribe",
        Object.assign(
          {
            phone: phone.value,
            consent: agree.checked,
            disclosure_version: config.disclosure.version,
            page_url: window.location.href.split("#")[0].slice(0, 2000),
          },
          who
        )
      ).then(function (result) {
        button.disabled = false;
        if (result.ok) {
          say(status, result.body.detail, "ok");
          phone.value = "";
          agree.checked = false;
        } else {
          say(status, problem(result), "error");
        }
      });
    });
    return form;
  }

  function load(note) {
    api("/config").then(function (config) {
      if (!config.ok) {
        box.replaceChildren(el("p", { class: "error", text: problem(config) }));
        return;
      }
      var c = config.body;
      var heading = el("h2", { text: c.brand + " " + c.program.name });
      if (!signed) {
        box.replaceChildren(heading, signUpPart(c));
        return;
      }
      post("/member", who).then(function (member) {
        var parts = [heading];
        if (member.ok) {
          parts.push(memberPart(c, member.body));
        } else if (member.status === 404) {
          parts.push(el("p", { text: "Join " + c.program.name + " with your next order to start earning " + c.program.points_name + "." }));
        } else {
          parts.push(el("p", { class: "error", text: problem(member) }));
        }
        parts.push(signUpPart(c));
        box.replaceChildren.apply(box, parts);
        if (note) {
          var status = box.querySelector("[role=status]");
          say(status, note, "ok");
        }
      });
    });
  }

  load();
})();
