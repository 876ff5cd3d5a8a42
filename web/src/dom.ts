// h builds DOM elements. Text always goes in as text nodes, never as HTML.
type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

/** h creates an element with attributes (on* keys add listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c);
  return el;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** clock formats a time of day. */
export function clock(d: Date): string {
  return timeFmt.format(d);
}

/** fullTime formats a date and time for tooltips. */
export function fullTime(d: Date): string {
  return fullFmt.format(d);
}

/** dayLabel names a day: Today, Yesterday, or its date. */
export function dayLabel(d: Date, now = new Date()): string {
  const day = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diff = Math.round((day(now) - day(d)) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  return dayFmt.format(d);
}

/** avatar is a coloured circle with the user's initial. */
export function avatar(user: string, small = false): HTMLElement {
  let hash = 0;
  for (const ch of user) hash = (hash * 31 + ch.codePointAt(0)!) >>> 0;
  const el = h("span", { class: small ? "avatar small" : "avatar", "aria-hidden": "true" }, (user[0] ?? "?").toUpperCase());
  el.style.backgroundColor = `hsl(${hash % 360} 55% 42%)`;
  return el;
}
