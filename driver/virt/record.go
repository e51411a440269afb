package virt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
)

// Records.
//
// A record is kept as a persistent domain that is defined and never started,
// named RecordDomainName(kind, name), whose <metadata> holds the record under
// RecordNS. Why a domain: it is the one object every libvirt host has, that
// every libvirt client can list and read (virsh dumpxml shows it), that
// needs no shared storage, and whose definition libvirt writes atomically.
// Its title and description tell a person looking at `virsh list --all` what
// it is and not to start it.

// RecordNS is the XML namespace of a record's element in its domain's
// <metadata>; distinct from MetadataNS so that a record can never be
// mistaken for a guest's labels.
const RecordNS = "https://virtpool.dev/xmlns/record/1"

// recordPrefix starts the domain name of every record.
const recordPrefix = "virtpool-"

var (
	recordKindRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)
	// Names are Terraform/pool names: what libvirt accepts in a domain name,
	// minus anything a shell or a path would trip on.
	recordNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,190}$`)
)

// RecordDomainName is the name of the domain that holds a record.
func RecordDomainName(kind, name string) string { return recordPrefix + kind + "-" + name }

// recordElem is a record's element:
//
//	<virtpool:record xmlns:virtpool="https://virtpool.dev/xmlns/record/1"
//	    kind="pool" name="web" generation="3">
//	  <virtpool:data key="spec">{…}</virtpool:data>
//	</virtpool:record>
type recordElem struct {
	XMLName xml.Name `xml:"record"`
	// NS is written as a plain xmlns attribute: libvirt needs the element
	// namespaced in a definition but GetMetadata returns it without, so
	// the tag above must match with and without one.
	NS         string          `xml:"xmlns,attr,omitempty"`
	Kind       string          `xml:"kind,attr"`
	Name       string          `xml:"name,attr"`
	Generation int64           `xml:"generation,attr"`
	Data       []metadataLabel `xml:"data"`
}

func newRecordElem(r driver.Record) recordElem {
	e := recordElem{NS: RecordNS, Kind: r.Kind, Name: r.Name, Generation: r.Generation}
	keys := make([]string, 0, len(r.Data))
	for k := range r.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys) // same record, same XML
	for _, k := range keys {
		e.Data = append(e.Data, metadataLabel{Key: k, Value: r.Data[k]})
	}
	return e
}

func (e recordElem) record() driver.Record {
	r := driver.Record{Kind: e.Kind, Name: e.Name, Generation: e.Generation}
	if len(e.Data) > 0 {
		r.Data = make(map[string]string, len(e.Data))
		for _, d := range e.Data {
			r.Data[d.Key] = d.Value
		}
	}
	return r
}

func validateRecordKey(kind, name string) error {
	var errs []error
	if !recordKindRE.MatchString(kind) {
		errs = append(errs, fmt.Errorf("record kind %q: want lower-case letters and digits, starting with a letter, at most 32", kind))
	}
	if !recordNameRE.MatchString(name) {
		errs = append(errs, fmt.Errorf("record name %q: want letters, digits, '_', '.', '-', starting with a letter or digit, at most 191", name))
	}
	return errors.Join(errs...)
}

func validateRecord(r driver.Record) error {
	errs := []error{validateRecordKey(r.Kind, r.Name)}
	if r.Generation < 0 {
		errs = append(errs, fmt.Errorf("record generation %d is negative", r.Generation))
	}
	for k, v := range r.Data {
		if k == "" {
			errs = append(errs, errors.New("record data has an empty key"))
		}
		if strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 && c != '\t' && c != '\n' && c != '\r' }) {
			// XML 1.0 cannot carry other control characters.
			errs = append(errs, fmt.Errorf("record data %q holds control characters", k))
		}
	}
	return errors.Join(errs...)
}

// recordXML is the definition of the domain holding r: no devices, a little
// memory, and the record in <metadata>. uuid keeps an existing record's
// UUID, which libvirt requires when a definition is replaced.
func recordXML(hypervisor, uuid string, r driver.Record) (string, error) {
	meta, err := xml.Marshal(newRecordElem(r))
	if err != nil {
		return "", fmt.Errorf("encode record: %w", err)
	}
	dom := &libvirtxml.Domain{
		Type:  domainType(hypervisor),
		Name:  RecordDomainName(r.Kind, r.Name),
		UUID:  uuid,
		Title: fmt.Sprintf("virtpool record: %s %s (never start)", r.Kind, r.Name),
		Description: fmt.Sprintf("virtpool record of kind %q named %q, generation %d. "+
			"virtpool keeps its data in this domain's metadata; the domain has no devices "+
			"and must not be started. Remove it with Terraform or virtpool, not by hand.", r.Kind, r.Name, r.Generation),
		Metadata:   &libvirtxml.DomainMetadata{XML: string(meta)},
		Memory:     &libvirtxml.DomainMemory{Value: 16, Unit: "MiB"},
		VCPU:       &libvirtxml.DomainVCPU{Value: 1},
		OS:         &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
	}
	return dom.Marshal()
}

// domainType maps a connection's hypervisor name to a domain type.
func domainType(hypervisor string) string {
	// QEMU → "qemu" rather than "kvm": defining it needs no working KVM.
	// TEST → "test", Xen → "xen", …
	return strings.ToLower(hypervisor)
}

// readRecord returns the record held by dom, or ok=false if dom holds none.
func readRecord(dom *lv.Domain) (driver.Record, bool, error) {
	s, err := dom.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, RecordNS, lv.DOMAIN_AFFECT_CONFIG)
	if err != nil {
		if hasCode(err, lv.ERR_NO_DOMAIN_METADATA) {
			return driver.Record{}, false, nil
		}
		return driver.Record{}, false, err
	}
	var e recordElem
	if err := xml.Unmarshal([]byte(s), &e); err != nil {
		return driver.Record{}, false, fmt.Errorf("decode record: %w", err)
	}
	return e.record(), true, nil
}

// isRecord reports whether a domain named name holds a virtpool record;
// ListDomains and Stats leave those out. Only inactive domains named like a
// record are read, so listing guests costs no extra call per guest.
func isRecord(dom *lv.Domain, name string, active bool) bool {
	if active || !strings.HasPrefix(name, recordPrefix) {
		return false
	}
	_, ok, err := readRecord(dom)
	return err == nil && ok
}

// internal reports whether a domain is virtpool's own business, not a
// guest: a record, or the short-lived guest that probes KVM.
func internal(dom *lv.Domain, name string, active bool) bool {
	return strings.HasPrefix(name, kvmProbePrefix) || isRecord(dom, name, active)
}

// PutRecord defines (or redefines) the domain holding r.
func (d *Driver) PutRecord(ctx context.Context, uri string, r driver.Record) error {
	const op = "put record"
	dname := RecordDomainName(r.Kind, r.Name)
	if err := validateRecord(r); err != nil {
		return opError(op, uri, dname, driver.CodeInvalidArg, err)
	}
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return wrap(op, uri, dname, err)
	}
	typ, err := c.GetType()
	if err != nil {
		d.conns.check(uri, err)
		return wrap(op, uri, dname, err)
	}
	// A record new here that another writer creates meanwhile makes the
	// define fail (its name taken, under another UUID): the second try
	// replaces that one, as a write over an existing record does.
	for try := 0; ; try++ {
		uuid, err := recordUUID(c, op, uri, dname)
		if err != nil {
			d.conns.check(uri, err)
			return wrap(op, uri, dname, err)
		}
		x, err := recordXML(typ, uuid, r)
		if err != nil {
			return opError(op, uri, dname, 0, err)
		}
		// One define call: the record appears, or changes, all at once.
		dom, err := c.DomainDefineXMLFlags(x, lv.DOMAIN_DEFINE_VALIDATE)
		if err != nil && uuid == "" && try == 0 {
			continue
		}
		if err != nil {
			d.conns.check(uri, err)
			return wrap(op, uri, dname, err)
		}
		dom.Free()
		d.log.Debug("record stored", "host", uri, "kind", r.Kind, "name", r.Name, "generation", r.Generation)
		return nil
	}
}

// recordUUID is the UUID of the record domain dname ("" if there is
// none); a domain of that name that is no record is an error: a guest
// that happens to carry a record's name is never overwritten.
func recordUUID(c *lv.Connect, op, uri, dname string) (string, error) {
	old, err := c.LookupDomainByName(dname)
	if noDomain(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer old.Free()
	if _, ok, err := readRecord(old); err != nil {
		return "", err
	} else if !ok {
		return "", opError(op, uri, dname, driver.CodeOperationInvalid, fmt.Errorf("a domain named %s exists and is not a virtpool record", dname))
	}
	return old.GetUUIDString()
}

// ListRecords returns the records of a host, sorted by kind and name.
func (d *Driver) ListRecords(ctx context.Context, uri string) ([]driver.Record, error) {
	const op = "list records"
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return nil, wrap(op, uri, "", err)
	}
	doms, err := c.ListAllDomains(lv.CONNECT_LIST_DOMAINS_PERSISTENT)
	if err != nil {
		d.conns.check(uri, err)
		return nil, wrap(op, uri, "", err)
	}
	var out []driver.Record
	var firstErr error
	for i := range doms {
		dom := &doms[i]
		name, err := dom.GetName()
		if err == nil && strings.HasPrefix(name, recordPrefix) {
			var r driver.Record
			var ok bool
			r, ok, err = readRecord(dom)
			if ok {
				out = append(out, r)
			}
		}
		dom.Free()
		if err != nil && !noDomain(err) && firstErr == nil {
			firstErr = wrap(op, uri, name, err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, firstErr
}

// DeleteRecord undefines the domain holding a record. A domain of that name
// that is not a record is left alone (and reported).
func (d *Driver) DeleteRecord(ctx context.Context, uri, kind, name string) error {
	const op = "delete record"
	dname := RecordDomainName(kind, name)
	if err := validateRecordKey(kind, name); err != nil {
		return opError(op, uri, dname, driver.CodeInvalidArg, err)
	}
	err := d.withDomain(ctx, op, uri, dname, func(_ *lv.Connect, dom *lv.Domain) error {
		if _, ok, err := readRecord(dom); err != nil {
			return err
		} else if !ok {
			return opError(op, uri, dname, driver.CodeOperationInvalid,
				fmt.Errorf("domain %s is not a virtpool record; not removed", dname))
		}
		// Someone started it by hand: it holds nothing worth keeping running.
		if active, err := dom.IsActive(); err != nil {
			return err
		} else if active {
			if err := destroyIfActive(dom); err != nil {
				return err
			}
		}
		return dom.Undefine()
	})
	if driver.IsNotFound(err) {
		return nil
	}
	return err
}

// noDomain reports whether err is libvirt's "no such domain".
func noDomain(err error) bool {
	return hasCode(err, lv.ERR_NO_DOMAIN)
}
