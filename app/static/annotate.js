// Ranking page: reorder cards by drag and drop (Sortable) or keyboard, tie them, flag them.
// The forms post through htmx; this file only fills in groups, flags and time spent.
//
// Model: #ranking is a flat list of cards, best first. A card with data-tied="true" is tied
// with the card above it, so a group is a head card plus the tied cards that follow it.
(function () {
  "use strict";

  let selected = null;
  let startedAt = performance.now();

  const list = () => document.getElementById("ranking");
  const cards = () => Array.from(list().children);
  const isTied = (card) => card.dataset.tied === "true";
  const setTied = (card, tied) => { card.dataset.tied = tied ? "true" : "false"; };

  function groups() {
    const out = [];
    for (const card of cards()) {
      if (isTied(card) && out.length) out[out.length - 1].push(card);
      else out.push([card]);
    }
    return out;
  }

  // Labels, badges and the tie button follow the model after every change.
  function refresh() {
    const all = cards();
    if (all.length) setTied(all[0], false);
    groups().forEach((group, i) => {
      for (const card of group) {
        card.querySelector(".rank-label").textContent = "Rank " + (i + 1);
        card.classList.toggle("tied", isTied(card));
        card.classList.toggle("in-tie", group.length > 1);
        card.querySelector(".tie-toggle").textContent = isTied(card) ? "Untie" : "Tie with above";
      }
    });
  }

  function writeGroups(gs) {
    const el = list();
    for (const group of gs) {
      group.forEach((card, j) => { setTied(card, j > 0); el.appendChild(card); });
    }
    refresh();
  }

  // Arrow keys: a tied card first steps out of its group; a single card jumps a whole group.
  function move(card, dir) {
    const gs = groups();
    const gi = gs.findIndex((g) => g.includes(card));
    const alone = gs[gi].length === 1;
    gs[gi] = gs[gi].filter((c) => c !== card);
    let at;
    if (!alone) {
      at = dir < 0 ? gi : gi + 1;
    } else {
      gs.splice(gi, 1);
      at = dir < 0 ? Math.max(gi - 1, 0) : Math.min(gi + 1, gs.length);
    }
    gs.splice(at, 0, [card]);
    writeGroups(gs);
    select(card);
  }

  function tie(card, tied) {
    if (tied && !card.previousElementSibling) return;
    setTied(card, tied);
    refresh();
  }

  function select(card) {
    if (selected) selected.classList.remove("selected");
    selected = card;
    card.classList.add("selected");
    card.focus();
  }

  function toggleFlag(card) {
    const flagged = card.dataset.flagged !== "true";
    card.dataset.flagged = flagged ? "true" : "false";
    card.classList.toggle("flagged", flagged);
    const reason = card.querySelector(".flag-reason");
    reason.hidden = !flagged;
    card.querySelector(".flag-toggle").textContent = flagged ? "Unflag" : "Flag harmful";
    if (flagged) reason.querySelector("input").focus();
  }

  const groupIds = () => JSON.stringify(
    groups().map((g) => g.map((c) => Number(c.dataset.sampleId))));
  const flagList = () => JSON.stringify(cards()
    .filter((c) => c.dataset.flagged === "true")
    .map((c) => ({ sample_id: Number(c.dataset.sampleId),
                   reason: c.querySelector(".flag-reason input").value })));

  function setup() {
    const el = list();
    if (!el || el.dataset.ready) return;
    el.dataset.ready = "true";
    selected = null;
    startedAt = performance.now();
    let follower = null;
    let wasHead = false;
    // Dropping a card inside a group joins it; between groups it stands alone.
    Sortable.create(el, {
      animation: 120,
      filter: "input, textarea, button, label",
      preventOnFilter: false,
      onStart: (evt) => {
        follower = evt.item.nextElementSibling;
        wasHead = !isTied(evt.item);
      },
      onEnd: (evt) => {
        if (evt.oldIndex === evt.newIndex) return;
        if (wasHead && follower && isTied(follower)) setTied(follower, false);
        const next = evt.item.nextElementSibling;
        setTied(evt.item, Boolean(next && isTied(next)));
        refresh();
        select(evt.item);
      },
    });
    refresh();
    showLastTurn();
  }

  // A conversation's box opens on its last turn, the one the answers reply to, when the turns
  // before it (a long assistant answer, say) would push it out of view.
  function showLastTurn() {
    const box = document.getElementById("prompt");
    const last = document.getElementById("last-turn");
    if (!box || !last) return;
    const boxTop = box.getBoundingClientRect().top;
    const turn = last.getBoundingClientRect();
    if (turn.bottom > box.getBoundingClientRect().bottom) {
      box.scrollTop += turn.top - boxTop - box.clientTop;
    }
  }

  document.addEventListener("DOMContentLoaded", setup);
  document.addEventListener("htmx:afterSettle", (evt) => {
    const fresh = list() && !list().dataset.ready;
    setup();
    // A task swapped in takes the focus (without selecting a card), so Tab continues in it
    // rather than from the top of the page.
    const card = document.getElementById("task-card");
    if (fresh && card && evt.detail.target && evt.detail.target.id === "task") {
      card.focus({ preventScroll: true });
    }
  });

  document.addEventListener("click", (evt) => {
    const card = evt.target.closest("#ranking > li");
    if (!card) return;
    if (evt.target.closest(".tie-toggle")) tie(card, !isTied(card));
    else if (evt.target.closest(".flag-toggle")) toggleFlag(card);
    else if (evt.target.closest(".move-up")) move(card, -1);
    else if (evt.target.closest(".move-down")) move(card, 1);
    else if (!evt.target.closest("input, label")) select(card);
  });

  // Keys (listed on the page): 1-9 select, arrows move, t tie, u untie, f flag,
  // Enter submit, s skip, g guidelines.
  document.addEventListener("keydown", (evt) => {
    if (!list() || evt.ctrlKey || evt.metaKey || evt.altKey) return;
    if (evt.target.closest("input, textarea, select, [contenteditable]")) return;
    if (/^[1-9]$/.test(evt.key)) {
      const card = list().querySelector('li[data-number="' + evt.key + '"]');
      if (card) { select(card); evt.preventDefault(); }
      return;
    }
    const key = evt.key;
    if ((key === "ArrowUp" || key === "ArrowDown") && selected) {
      move(selected, key === "ArrowUp" ? -1 : 1);
    } else if (key === "t" && selected) {
      tie(selected, true);
    } else if (key === "u" && selected) {
      tie(selected, false);
    } else if (key === "f" && selected) {
      toggleFlag(selected);
    } else if (key === "Enter" && !evt.target.closest("button, a, summary")) {
      document.getElementById("rank-form").requestSubmit();
    } else if (key === "s") {
      document.getElementById("skip-form").requestSubmit();
    } else if (key === "g") {
      const guidelines = document.getElementById("guidelines");
      guidelines.open = !guidelines.open;
    } else {
      return;
    }
    evt.preventDefault();
  });

  // The answer forms: fill in the ranking, the flags and the time spent just before sending.
  document.addEventListener("htmx:configRequest", (evt) => {
    const form = evt.detail.elt;
    if (!form.closest || !form.closest("#task-card")) return;
    const params = evt.detail.parameters;
    if (form.id === "rank-form") params["groups"] = groupIds();
    if (form.querySelector('[name="flags"]')) {
      params["flags"] = flagList();
      params["time_spent_ms"] = String(Math.round(performance.now() - startedAt));
    }
  });

  // Tab to a card selects it: the keys act on the card that looks selected.
  document.addEventListener("focusin", (evt) => {
    const card = evt.target.closest && evt.target.closest("#ranking > li");
    if (card && evt.target === card && card !== selected) select(card);
  });

  // A new answer or task clears the last error, except when the page reloads the task by
  // itself: then the message says why.
  let keepFlash = false;
  document.addEventListener("htmx:beforeRequest", (evt) => {
    const elt = evt.detail.elt;
    const target = evt.detail.target;
    const intoTask = (elt.closest && elt.closest("#task-card")) || (target && target.id === "task");
    if (intoTask && !keepFlash) document.getElementById("flash").innerHTML = "";
    keepFlash = false;
  });

  function reloadTask() {
    keepFlash = true;
    document.getElementById("next-task").click();
  }

  // Lease again; true when the same task comes back (its slot was still free).
  async function leasedAgain(taskId) {
    const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    const response = await fetch("/annotate/next", {
      method: "POST",
      credentials: "same-origin",
      headers: { ...headers, Accept: "application/json" },
    });
    if (!response.ok) return false;
    const body = await response.json();
    return Boolean(body.task) && String(body.task.id) === String(taskId);
  }

  document.addEventListener("htmx:responseError", async (evt) => {
    const status = evt.detail.xhr.status;
    const form = evt.detail.elt;
    const inTask = Boolean(form && form.closest && form.closest("#task-card"));
    const answer = inTask && (form.id === "rank-form" || form.id === "none-form");
    if (status === 410 && answer && !form.dataset.leasedAgain) {
      // The lease ran out while the annotator worked: when the task can be leased again,
      // send the same answer once more instead of throwing the work away.
      const card = document.getElementById("task-card");
      if (card && (await leasedAgain(card.dataset.taskId))) {
        form.dataset.leasedAgain = "true";
        form.requestSubmit();
        return;
      }
    }
    // Expired, already answered, closed, or not leased (another tab, the Back button): the
    // task on the page cannot be answered any more, so fetch the next one.
    if (status === 410 || (status === 409 && inTask)) reloadTask();
  });
})();
