// Formatting for the view: times, days and the colour of a user's avatar.
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
  const diff = Math.round((dayStart(now) - dayStart(d)) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  return dayFmt.format(d);
}

/** dayStart is the start of d's day in local time, in ms: equal for times of one day. */
export function dayStart(d: Date): number {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** avatarColor is a user's avatar colour, the same on every page. */
export function avatarColor(user: string): string {
  let hash = 0;
  for (const ch of user) hash = (hash * 31 + ch.codePointAt(0)!) >>> 0;
  return `hsl(${hash % 360} 55% 42%)`;
}
