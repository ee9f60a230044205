#!/usr/bin/env bash
# Regenerate the demo speech clips in router/demo/clips/:
#   floor_en.opus  the floor (English original, the moderator's welcome)
#   booth_fr.opus  French interpretation of the same text
#   booth_ne.opus  Nepali interpretation (Devanagari, espeak-ng voice "ne")
#   booth_es.opus  Spanish interpretation
# The texts are drawn from the concept note of the side event "Trafficking in
# children on the rise: immediate action required" (opening of BACKGROUND).
# Each clip: synthetic speech (espeak-ng), leading/trailing silence trimmed,
# peak-normalised to -3 dBFS, 0.5 s of silence appended so loops breathe, 48 kHz
# mono, Ogg/Opus at 24 kbit/s.
#
# Voices (distinct per channel): floor en-gb low male; fr female (fr+f3);
# ne higher male (ne+m3); es high female (es+f4).
# Output is byte-for-byte reproducible with the same tool versions (no dither,
# fixed Ogg serial numbers).
# Needs the Debian packages espeak-ng, sox and opus-tools.
# Usage: bash router/demo/make_clips.sh   (from any directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${here}/clips"

for tool in espeak-ng sox opusenc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "make_clips.sh: '$tool' not found (apt-get install espeak-ng sox opus-tools)" >&2
        exit 1
    fi
done

mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# make_clip NAME LANG VOICE PITCH SPEED SERIAL TITLE  (text on stdin)
make_clip() {
    local name="$1" lang="$2" voice="$3" pitch="$4" speed="$5" serial="$6" title="$7"
    local text="${tmp}/${name}.txt" raw="${tmp}/${name}.raw.wav" wav="${tmp}/${name}.wav"
    cat >"$text"
    espeak-ng -v "$voice" -p "$pitch" -s "$speed" -b 1 -f "$text" -w "$raw"
    # trim silence at both ends, normalise to -3 dBFS peak, add 0.5 s tail,
    # resample to 48 kHz mono 16-bit (no dither: reproducible output)
    sox -D "$raw" -r 48000 -c 1 -b 16 "$wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
        gain -n -3 pad 0 0.5
    opusenc --quiet --bitrate 24 --speech --serial "$serial" \
        --title "$title" --artist "interp-router demo (espeak-ng)" \
        --comment "language=${lang}" \
        "$wav" "${out}/${name}.opus"
    printf '%-15s %6.2f s  %6d bytes\n' "${name}.opus" \
        "$(soxi -D "$wav")" "$(stat -c %s "${out}/${name}.opus")"
}

# --- Floor: English original (moderator's welcome) -------------------------
make_clip floor_en en en-gb 35 165 1001 "Floor (original), English" <<'EOF'
Good afternoon, and welcome to this side event: Trafficking in children on the rise, immediate action required.
Trafficking in children is a severe violation of human rights, a form of violence against children, and a serious crime.
It continues to increase and evolve, within and across borders.
Children now account for thirty-eight per cent of victims detected globally.
EOF

# --- French booth -------------------------------------------------------------
make_clip booth_fr fr fr+f3 45 170 1002 "Cabine française" <<'EOF'
Bonjour, et bienvenue à cette manifestation parallèle : La traite des enfants en hausse, une action immédiate s'impose.
La traite des enfants est une grave violation des droits humains, une forme de violence à l'encontre des enfants, et un crime grave.
Elle continue de s'accroître et d'évoluer, à l'intérieur des frontières comme au-delà.
Les enfants représentent désormais trente-huit pour cent des victimes détectées dans le monde.
EOF

# --- Nepali booth (Devanagari) -----------------------------------------------
make_clip booth_ne ne ne+m3 75 195 1003 "नेपाली बुथ" <<'EOF'
नमस्कार। यस समानान्तर कार्यक्रममा यहाँहरूलाई हार्दिक स्वागत छ: बालबालिकाको बेचबिखन बढ्दो छ, तत्काल कारबाही आवश्यक छ।
बालबालिकाको बेचबिखन मानव अधिकारको गम्भीर उल्लङ्घन, बालबालिकाविरुद्ध हुने हिंसाको एक रूप, र गम्भीर अपराध हो।
यो देशभित्र र सीमापार निरन्तर बढ्दै र नयाँ रूप लिँदै गएको छ।
विश्वभर पहिचान भएका पीडितमध्ये अहिले अठतीस प्रतिशत बालबालिका छन्।
EOF

# --- Spanish booth ------------------------------------------------------------
make_clip booth_es es es+f4 75 180 1004 "Cabina española" <<'EOF'
Buenas tardes, y bienvenidos a este evento paralelo: La trata de niños en aumento, se requiere una acción inmediata.
La trata de niños es una grave violación de los derechos humanos, una forma de violencia contra los niños, y un delito grave.
Sigue aumentando y evolucionando, dentro de las fronteras y a través de ellas.
Los niños representan ya el treinta y ocho por ciento de las víctimas detectadas en todo el mundo.
EOF
