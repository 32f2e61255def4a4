// The HUD's one script: the page keeps itself up to date, and its tables sort and export.
// Everything here is an enhancement: with JavaScript off the pages are whole, a reload shows
// what is new, and every table's data is in the page's JSON twin under /api/crcr.
//
// - Live: every `data-live-every` seconds (CRCR_HUD_REFRESH) while the tab is visible, the
//   page's own URL is fetched and its <main> put in place of ours, if it changed. Open
//   <details>, a table's sort and the scroll position stay as they were; nothing is replaced
//   while a form field in it has the focus.
// - Sort: a table's column headers become buttons (aria-sort says the order); numbers sort
//   as numbers ("12 %", "1.5 s", "2,000"), a cell's data-sort overrides its text.
// - CSV: each table gets a "CSV" button that downloads what it shows, in its current order.
// - Charts: a day's or a point's figures show beside the pointer as it moves over them.
"use strict";

(() => {
  const main = document.getElementById("main");
  if (!main) return;

  // -- sorting --------------------------------------------------------------------------------

  const sorted = new Map(); // table key → {column, descending}

  const tables = (root) => Array.from(root.querySelectorAll("table")).filter(sortable);

  function sortable(table) {
    // One header row over a body of plain rows: a spanning cell has no single column.
    const head = table.tHead;
    if (!head || head.rows.length !== 1 || !table.tBodies.length) return false;
    return !table.querySelector("tbody [rowspan], tbody [colspan]");
  }

  function tableKey(table, index) {
    return table.id || `${table.className}#${index}`;
  }

  function cellValue(row, column) {
    const cell = row.cells[column];
    if (!cell) return "";
    return (cell.dataset.sort ?? cell.textContent).trim();
  }

  const UNITS = { d: 86400, h: 3600, m: 60, s: 1, ms: 0.001 };

  function asNumber(text) {
    // "71.4%", "! 71.4%" (a mark before it), "2,000", "1h 02m", "4m 10s", "9s"; else null.
    const plain = text.replace(/^[^\d\s.-]{1,2}\s+/, "").replace(/,/g, "").trim();
    const number = /^(-?\d+(?:\.\d+)?)\s*%?$/.exec(plain);
    if (number) return Number(number[1]);
    const parts = plain.match(/\d+(?:\.\d+)?\s*(?:ms|d|h|m|s)\b/g);
    if (!parts || parts.join(" ") !== plain.replace(/\s+/g, " ")) return null;
    return parts.reduce((sum, part) => {
      const [, value, unit] = /^(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)$/.exec(part);
      return sum + Number(value) * UNITS[unit];
    }, 0);
  }

  function compare(a, b) {
    const x = asNumber(a);
    const y = asNumber(b);
    if (x !== null && y !== null) return x - y;
    if (x !== null) return -1; // numbers before words ("no data", "—")
    if (y !== null) return 1;
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function sortBy(table, column, descending) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((r, s) => compare(cellValue(r, column), cellValue(s, column)));
    if (descending) rows.reverse();
    body.append(...rows);
    Array.from(table.tHead.rows[0].cells).forEach((th, index) => {
      if (index === column) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
  }

  function enhanceSorting(table, key) {
    Array.from(table.tHead.rows[0].cells).forEach((th, column) => {
      if (th.querySelector("button.sort")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.title = "Sort by this column";
      button.append(...th.childNodes);
      th.append(button);
      button.addEventListener("click", () => {
        const now = sorted.get(key);
        const descending = now && now.column === column ? !now.descending : false;
        sorted.set(key, { column, descending });
        sortBy(table, column, descending);
      });
    });
    const order = sorted.get(key);
    if (order) sortBy(table, order.column, order.descending);
  }

  // -- CSV --------------------------------------------------------------------------------------

  function csvField(text) {
    const value = text.replace(/\s+/g, " ").trim();
    // A leading = + - @ would be a formula to a spreadsheet: keep it text.
    const safe = /^[=+\-@]/.test(value) && asNumber(value) === null ? `'${value}` : value;
    return /[",\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  }

  function csvOf(table) {
    const rows = [table.tHead.rows[0], ...table.tBodies[0].rows];
    return rows
      .map((row) => Array.from(row.cells).map((cell) => csvField(cell.textContent)).join(","))
      .join("\r\n");
  }

  function csvName(table, index) {
    const page = location.pathname.replace(/^\/+|\/+$/g, "").replace(/[^A-Za-z0-9]+/g, "-");
    return `${page || "crcr"}-${table.id || table.className.split(" ")[0] || "table"}-${index + 1}.csv`;
  }

  function enhanceCsv(table, index) {
    const previous = table.previousElementSibling;
    if (previous && previous.classList.contains("table-tools")) return;
    const tools = document.createElement("div");
    tools.className = "table-tools";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "csv";
    button.textContent = "CSV";
    button.title = "Download this table as CSV, in the order shown";
    button.addEventListener("click", () => {
      const blob = new Blob([`${csvOf(table)}\r\n`], { type: "text/csv;charset=utf-8" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = csvName(table, index);
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });
    tools.append(button);
    table.before(tools);
  }

  // -- chart values on hover -------------------------------------------------------------------

  // A chart's day or point carries its figures in an SVG <title> (the browser's own tooltip
  // without JavaScript); here they move to data-tip and show at once, beside the pointer.
  const tip = document.createElement("div");
  tip.className = "chart-tip";
  tip.setAttribute("role", "status");
  tip.hidden = true;
  document.body.append(tip);

  function enhanceCharts(root) {
    root.querySelectorAll("svg.chart title").forEach((title) => {
      title.parentElement.dataset.tip = title.textContent;
      title.remove();
    });
  }

  function showTip(event) {
    const target = event.target.closest && event.target.closest("svg.chart [data-tip]");
    if (!target) {
      tip.hidden = true;
      return;
    }
    tip.textContent = target.dataset.tip;
    tip.hidden = false;
    const x = Math.min(event.clientX + 12, window.innerWidth - tip.offsetWidth - 4);
    tip.style.left = `${Math.max(x, 4)}px`;
    tip.style.top = `${Math.max(event.clientY - tip.offsetHeight - 8, 4)}px`;
  }

  main.addEventListener("pointermove", showTip);
  main.addEventListener("pointerleave", () => (tip.hidden = true));

  function enhance(root) {
    tables(root).forEach((table, index) => {
      enhanceSorting(table, tableKey(table, index));
      enhanceCsv(table, index);
    });
    enhanceCharts(root);
  }

  // -- live -------------------------------------------------------------------------------------

  const every = Number(main.dataset.liveEvery || 0);
  let shown = main.innerHTML; // as the server rendered it, before enhance()

  function detailsKeys(root) {
    // Each <details> by its summary's text (and which of that text it is), so a row that
    // moved keeps its own open or closed state.
    const seen = new Map();
    return Array.from(root.querySelectorAll("details")).map((d) => {
      const text = (d.querySelector("summary")?.textContent || "").trim();
      const n = (seen.get(text) || 0) + 1;
      seen.set(text, n);
      return [`${text}\u0000${n}`, d];
    });
  }

  function busy() {
    const active = document.activeElement;
    return active && main.contains(active) && active.matches("input, select, textarea");
  }

  async function refresh() {
    if (document.hidden || busy()) return;
    let response;
    try {
      response = await fetch(location.href, { cache: "no-store", credentials: "same-origin" });
    } catch {
      main.dataset.live = "offline";
      return;
    }
    if (!response.ok) {
      main.dataset.live = `error ${response.status}`;
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("main");
    main.dataset.live = "on";
    if (!fresh || fresh.innerHTML === shown || busy()) return;
    shown = fresh.innerHTML;
    const opened = new Map(detailsKeys(main).map(([key, d]) => [key, d.open]));
    const { scrollX, scrollY } = window;
    main.replaceChildren(...fresh.childNodes);
    enhance(main); // sorted as it was, before the details are matched in that order
    for (const [key, d] of detailsKeys(main)) {
      if (opened.has(key)) d.open = opened.get(key);
    }
    window.scrollTo(scrollX, scrollY);
    main.dispatchEvent(new CustomEvent("crcr:refreshed"));
  }

  enhance(main);
  if (every > 0) {
    main.dataset.live = "on";
    setInterval(refresh, every * 1000);
    document.addEventListener("visibilitychange", () => document.hidden || refresh());
  }
})();
