#!/usr/bin/env bash
# krew-manifest.sh DIST_DIR VERSION BASE_URL renders krew/.krew.yaml into DIST_DIR/svctrace.yaml:
# every addURIAndSha becomes the archive's uri under BASE_URL and its sha256, as
# krew-release-bot does for a release. With KREW_PARTIAL=1, platforms whose archive was not built
# are left out (make test builds only this machine's); otherwise a missing archive is an error.
set -euo pipefail
dist=$1 version=$2 base=$3
here=$(cd "$(dirname "$0")/.." && pwd)
out="$dist/svctrace.yaml"
: > "$out"
# A platform's block is held until its archive is known to exist, then written or dropped.
block="" keep=1
flush() {
	if [[ $keep == 1 ]]; then printf '%s' "$block" >> "$out"; fi
	block="" keep=1
}
while IFS= read -r line; do
	if [[ $line == \#* ]]; then
		continue
	elif [[ $line == "  - selector:" ]]; then
		flush
		block+="$line"$'\n'
	elif [[ $line == *addURIAndSha* ]]; then
		indent=${line%%\{*}
		file=$(sed -E 's/.*download\/\{\{ \.TagName \}\}\/([^"]*)".*/\1/' <<<"$line")
		file=${file//\{\{ .TagName \}\}/$version}
		if [[ ! -f $dist/$file && ${KREW_PARTIAL:-0} == 1 ]]; then
			keep=0
			continue
		fi
		sha=$(sha256sum "$dist/$file" | cut -d' ' -f1)
		block+=$(printf '%suri: %s/%s\n%ssha256: %s' "$indent" "$base" "$file" "$indent" "$sha")$'\n'
	elif [[ -n $block && $line == "    "* ]]; then
		block+="${line//\{\{ .TagName \}\}/$version}"$'\n'
	else
		flush
		printf '%s\n' "${line//\{\{ .TagName \}\}/$version}" >> "$out"
	fi
done < "$here/krew/.krew.yaml"
flush
echo "$out"
